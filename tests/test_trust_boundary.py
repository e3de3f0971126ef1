"""The trust boundary (issue 12.1, 12.2): what someone who can write to Redis can make a
worker or a dashboard visitor's browser do. Registrations and task hashes are data;
workers import only allowed code and call only public methods; the dashboard escapes."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading

import pytest
from support.foundation import wait_for_workers
from support.sample_modules import Echo, Failer
from support.trust_modules import Guarded
from support.waiting import wait_until
from support.workers import WorkerProcess

from piano_dist import ConcurrentModuleManager
from piano_dist.core.allowlist import AllowList
from piano_dist.errors import SecurityError


def _register_raw(redis_client, name: str, class_path: str, methods=("run",)) -> None:
    """A registration as anyone with Redis access could write it."""
    redis_client.hset("piano:modules", name, json.dumps({"class": class_path, "config": {},
                                                         "methods": list(methods), "agent_id": None}))


# --- the allow-list --------------------------------------------------------------------
def test_allow_list_matches_whole_import_path_components(monkeypatch):
    monkeypatch.delenv("PIANO_ALLOWED_MODULES", raising=False)
    default = AllowList.from_env()
    assert default.prefixes == ("piano_dist",) and not default.allows_all
    assert default.allows("piano_dist.demo.action:ActionModule")
    assert not default.allows("piano_distevil:X") and not default.allows("os:system")

    monkeypatch.setenv("PIANO_ALLOWED_MODULES", "myapp.modules, other")
    mine = AllowList.from_env(["extra.pkg"])
    assert mine.prefixes == ("piano_dist", "myapp.modules", "other", "extra.pkg")
    assert mine.allows("myapp.modules:A") and mine.allows("myapp.modules.planning:B")
    assert not mine.allows("myapp.modules_old:C") and not mine.allows("myapp:D")
    assert AllowList(["*"]).allows("subprocess:Popen")
    for bad in ["os system", "a..b", "1abc", "pkg.", "pk\ng"]:
        with pytest.raises(SecurityError, match="not an import path"):
            AllowList([bad])


def test_worker_never_imports_a_module_outside_its_allowed_paths(redis_url, redis_client):
    manager = ConcurrentModuleManager(max_workers=0, redis_url=redis_url)
    workers = []
    try:
        manager.register_module("echo", Echo())
        _register_raw(redis_client, "canary", "support.trust_canary:Canary")
        _register_raw(redis_client, "popen", "subprocess:Popen")
        canary = manager.submit_task("canary", "run")
        popen = manager.submit_task("popen", "run")
        strict = WorkerProcess(redis_url, concurrency=2, name="strict",
                               env={"PIANO_ALLOWED_MODULES": "support.sample_modules"})
        workers.append(strict)
        for tid in (canary, popen):
            status = wait_until(lambda: (s := manager.get_task_status(tid)) and "waiting_because" in s and s,
                                timeout=20, message="the worker to set the task aside")
            assert status["status"] == "queued" and "allow" in status["waiting_because"], status
        # The worker keeps serving what it may run, and never imported the others.
        assert manager.get_result(manager.submit_task("echo", "add", args=(2, 3)), timeout=20) == 5
        assert redis_client.llen("test:canary-imported") == 0
        assert manager.get_task_status(canary)["status"] == "queued"

        # A worker told to trust that path takes the parked task and runs it.
        trusting = WorkerProcess(redis_url, concurrency=1, name="trusting",
                                 env={"PIANO_ALLOWED_MODULES": ""}, extra_args=["--allow", "support.trust_canary"])
        workers.append(trusting)
        assert manager.get_result(canary, timeout=20) == "canary ran"
        assert manager.get_task_status(canary)["worker"] == "trusting"
        # The new worker may try the other parked task too (it has not failed to load it
        # yet): it sets it aside again.
        wait_until(lambda: "trusting" in manager.get_task_status(popen).get("waiting_because", ""), timeout=20,
                   message="the trusting worker to refuse subprocess:Popen too")
        assert manager.get_task_status(popen)["status"] == "queued"
    finally:
        for w in workers:
            w.stop()
        manager.shutdown()


def test_allowing_every_module_is_announced_loudly(redis_url, redis_client, tmp_path):
    log_path = str(tmp_path / "worker.log")
    worker = WorkerProcess(redis_url, concurrency=1, name="open-door", log_level="INFO", log_path=log_path,
                           extra_args=["--allow", "*"])
    try:
        wait_for_workers(redis_client, ["open-door"], procs=[worker])
        wait_until(lambda: "ANY import path" in worker.log(), timeout=10, message="the warning")
        line = next(line for line in worker.log().splitlines() if "ANY import path" in line)
        assert "SECURITY WARNING" in line and "anyone who can write to this Redis can run code" in line
    finally:
        worker.stop()


def test_a_bad_allow_prefix_is_one_error_line(redis_url):
    result = subprocess.run([shutil.which("piano-dist") or "piano-dist", "worker", "--allow", "not a path"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result
    assert result.stderr.strip().startswith("error: ") and "not an import path" in result.stderr


def test_a_task_edited_to_name_a_private_method_fails_without_calling_it(redis_url, redis_client):
    manager = ConcurrentModuleManager(max_workers=0, redis_url=redis_url)
    worker = None
    try:
        manager.register_module("guarded", Guarded())
        private = manager.submit_task("guarded", "run", args=("a",))
        plumbing = manager.submit_task("guarded", "run", args=("b",))
        redis_client.hset(f"rq:job:{private}", "piano_method", "_private")
        redis_client.hset(f"rq:job:{plumbing}", "piano_method", "shutdown")
        worker = WorkerProcess(redis_url, concurrency=1, name="guard")
        final = manager.wait([private, plumbing], timeout=20)
        assert final[private]["status"] == "failed" and "private" in final[private]["error"], final[private]
        assert final[plumbing]["status"] == "failed" and "no public method 'shutdown'" in final[plumbing]["error"]
        assert redis_client.lrange("test:guarded", 0, -1) == []
        # The slot was freed: an ordinary task still runs.
        assert manager.get_result(manager.submit_task("guarded", "run", args=("c",)), timeout=20) == "c"
    finally:
        if worker:
            worker.stop()
        manager.shutdown()


# --- the dashboard ---------------------------------------------------------------------
try:
    import rq_dashboard.web  # noqa: F401
    HAVE_DASHBOARD = True
except ImportError:
    HAVE_DASHBOARD = False

PAYLOAD = "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">"
_RAW = re.compile(r"<%=(?!\s*\$\('<div/>'\)\.text\()")


def _hostile_tasks(redis_url):
    """A failed task whose error, and a completed one whose result and agent id, carry HTML."""
    manager = ConcurrentModuleManager(max_workers=1, redis_url=redis_url, agent_id="agent-with-html")
    manager.register_module("failer", Failer())
    manager.register_module("echo", Echo())
    failed = manager.submit_task("failer", "run", args=(PAYLOAD,))
    done = manager.submit_task("echo", "run", args=(PAYLOAD,))
    manager.wait([failed, done], timeout=20)
    return manager, failed, done


@pytest.mark.skipif(not HAVE_DASHBOARD, reason="rq-dashboard is not installed")
def test_dashboard_pages_escape_task_data(redis_url):
    from piano_dist.dashboard import make_app

    manager, failed, done = _hostile_tasks(redis_url)
    try:
        client = make_app(redis_url).test_client()
        pages = ["/", "/0/view/workers", f"/0/view/job/{failed}",
                 "/0/view/jobs/piano.normal/failed/8/asc/1"]
        for page in pages:
            html = client.get(page).get_data(as_text=True)
            assert "<%" in html, page  # the page's underscore templates are there…
            assert not _RAW.findall(html), (page, _RAW.findall(html))  # …and every insertion escapes
        assert "<%- d.exc_info %>" in client.get(f"/0/view/job/{failed}").get_data(as_text=True)
        # The data itself is untouched: only its insertion into HTML escapes.
        data = client.get(f"/0/data/job/{failed}.json").get_json()
        assert PAYLOAD in data["exc_info"]
        assert client.get(f"/0/data/job/{done}.json").get_json()["result"] == {"args": [PAYLOAD], "kwargs": {}}
    finally:
        manager.shutdown()


@pytest.mark.skipif(not HAVE_DASHBOARD or not shutil.which("chromium"),
                    reason="needs rq-dashboard and Debian's chromium")
def test_a_task_error_with_html_does_not_run_script_in_the_browser(redis_url):
    from werkzeug.serving import make_server

    from piano_dist.dashboard import make_app

    manager, failed, _ = _hostile_tasks(redis_url)
    server = make_server("127.0.0.1", 0, make_app(redis_url), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/0/view/job/{failed}"
        dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                              "--virtual-time-budget=10000", "--dump-dom", url],
                             capture_output=True, text=True, timeout=90).stdout
        assert "&lt;img src=x onerror=" in dom, dom[-3000:]  # the error was shown, as text
        assert 'data-pwned="1"' not in dom, "the task's error ran as script in the page"
    finally:
        server.shutdown()
        manager.shutdown()


def test_a_corrupt_registration_is_listed_not_fatal(redis_url, redis_client):
    from click.testing import CliRunner

    from piano_dist.cli.main import main as cli_main

    manager = ConcurrentModuleManager(max_workers=0, redis_url=redis_url)
    try:
        manager.register_module("echo", Echo())
        redis_client.hset("piano:modules", "broken", "{not json")
        result = CliRunner().invoke(cli_main, ["modules", "--json"])
        assert result.exit_code == 0, result.output
        assert "echo" in result.output and "broken" in result.output and "not valid JSON" in result.output
        manager.register_module("broken", Guarded())  # a corrupt record can be replaced
        assert manager.client.registry.get("broken").class_path == "support.trust_modules:Guarded"
    finally:
        manager.shutdown()
