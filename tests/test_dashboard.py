"""rq-dashboard shows piano-dist: its queues, its worker, and a dependent task's page,
both as `piano-dist dashboard` and as plain `rq-dashboard --config piano_dist.dashboard`."""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner
from support.foundation import wait_for_workers
from support.sample_modules import Echo
from support.waiting import wait_until
from support.workers import WorkerProcess, worker_env

from piano_dist import ConcurrentModuleManager
from piano_dist.embedded import free_port

QUEUES = {"piano.critical", "piano.high", "piano.normal", "piano.low", "piano.background"}

try:
    import rq_dashboard.web  # noqa: F401  (rq-dashboard 0.9 also needs six)
    HAVE_DASHBOARD = True
except ImportError as exc:
    HAVE_DASHBOARD, WHY_NOT = False, f"rq-dashboard is not importable ({exc}): pip install 'piano-dist[dashboard]'"


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Server:
    """A dashboard process on a free port; output goes to a file for a post-mortem."""

    def __init__(self, args: list[str], redis_url: str, log_path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, *[a.format(port=self.port) for a in args]],
                                     env=worker_env(redis_url), stdout=self._log, stderr=subprocess.STDOUT)

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"dashboard exited {self.proc.returncode}:\n{self.log()}")
        try:
            return _get(self.base + "/0/data/queues.json")[0] == 200
        except OSError:  # not listening yet
            return False

    def json(self, path: str) -> dict:
        status, body = _get(self.base + path)
        assert status == 200, f"GET {path}: {status}\n{body[:2000]!r}\n{self.log()}"
        return json.loads(body)

    def log(self) -> str:
        with open(self.log_path, "rb") as fh:
            return fh.read().decode(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.mark.skipif(not HAVE_DASHBOARD, reason=WHY_NOT if not HAVE_DASHBOARD else "")
def test_dashboard_shows_queues_worker_and_dependent_task(redis_url, redis_client, tmp_path):
    worker = WorkerProcess(redis_url, concurrency=2, name="dash-worker")
    manager = ConcurrentModuleManager(max_workers=0, redis_url=redis_url)
    servers = []
    try:
        manager.register_module("echo", Echo())
        wait_for_workers(redis_client, ["dash-worker"], procs=[worker])
        parent = manager.submit_task("echo", "add", args=(1, 2))
        child = manager.submit_task("echo", "run", args=("child",), dependencies=[parent])
        statuses = manager.wait([parent, child], timeout=20)
        assert [statuses[t]["status"] for t in (parent, child)] == ["completed", "completed"]

        servers = [
            Server(["-m", "piano_dist.cli.main", "--redis-url", redis_url, "dashboard", "--port", "{port}"],
                   redis_url, tmp_path / "piano-dist-dashboard.log"),
            # Plain rq-dashboard: its --config imports piano_dist.dashboard, which adjusts it.
            Server(["-m", "rq_dashboard", "--config", "piano_dist.dashboard", "--redis-url", redis_url,
                    "--bind", "127.0.0.1", "--port", "{port}"], redis_url, tmp_path / "rq-dashboard.log"),
        ]
        for server in servers:
            wait_until(server.ready, timeout=15, interval=0.05, message=f"the dashboard on {server.base}")
        for server in servers:
            listed = server.json("/0/data/queues.json")["queues"]
            queues = {q["name"]: q for q in listed}
            assert QUEUES <= set(queues), queues
            # Priority order, not rq-dashboard's alphabetical one (both entry points).
            assert [q["name"] for q in listed if q["name"] in QUEUES] == [
                "piano.critical", "piano.high", "piano.normal", "piano.low", "piano.background"]
            assert queues["piano.normal"]["finished_job_registry_count"] == 2, queues["piano.normal"]

            workers = server.json("/0/data/workers.json")["workers"]
            mine = next(w for w in workers if w["name"] == "dash-worker")
            assert set(mine["queues"]) == QUEUES and mine["successful_job_count"] == 2, mine
            assert mine["slots"] == 2 and mine["busy_slots"] == 0 and mine["running_tasks"] == [], mine

            # Job lists decode piano-dist's JSON-serialized jobs and results.
            finished = server.json("/0/data/jobs/piano.normal/finished/8/asc/1.json")["jobs"]
            assert {j["id"] for j in finished} == {parent, child}, finished

            # The dependent task's page, and the data it loads, with its parent listed.
            status, page = _get(f"{server.base}/0/view/job/{child}")
            assert status == 200 and child.encode() in page, (status, page[:500])
            data = server.json(f"/0/data/job/{child}.json")
            assert data["id"] == child and data["status"] == "finished", data
            assert data["depends_on"] == [parent] and data["depends_on_status"] == ["active"], data
            assert data["result"] == {"args": ["child"], "kwargs": {}}, data
            assert "depends_on" not in server.json(f"/0/data/job/{parent}.json")
    finally:
        for server in servers:
            server.stop()
        worker.stop()
        manager.shutdown()


@pytest.mark.skipif(not HAVE_DASHBOARD, reason=WHY_NOT if not HAVE_DASHBOARD else "")
def test_dashboard_job_data_for_a_plain_rq_job_with_dependencies(redis_url, redis_client):
    """RQ's own depends_on (the rq:job:<id>:dependencies set): rq-dashboard 0.9 alone
    answers 500 here under RQ 3 (it decodes ids RQ 3 already decoded)."""
    from rq import Queue
    from rq.serializers import JSONSerializer

    from piano_dist.dashboard import make_app

    queue = Queue("plain", connection=redis_client, serializer=JSONSerializer)
    first = queue.enqueue("builtins.len", "abc")
    second = queue.enqueue("builtins.len", "abcd", depends_on=first)
    response = make_app(redis_url).test_client().get(f"/0/data/job/{second.id}.json")
    assert response.status_code == 200, response.data[:2000]
    assert response.get_json()["depends_on"] == [first.id]
    assert response.get_json()["status"] == "deferred"


def test_dashboard_without_rq_dashboard_is_one_error_line(monkeypatch):
    from piano_dist.cli.main import main

    # A None entry in sys.modules makes the import raise ImportError.
    monkeypatch.delitem(sys.modules, "piano_dist.dashboard", raising=False)
    monkeypatch.setitem(sys.modules, "rq_dashboard", None)
    monkeypatch.setitem(sys.modules, "rq_dashboard.web", None)
    result = CliRunner().invoke(main, ["dashboard"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "pip install 'piano-dist[dashboard]'" in lines[0]
