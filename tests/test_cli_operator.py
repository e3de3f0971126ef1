"""The operator's CLI (issue 14): the real `piano-dist` command against a private Redis.

Errors are one `error:` line with exit 2, global options work before and after the
command, and tasks/status/info/cancel/unregister/policy/quota print what scripts rely on.
"""
from __future__ import annotations

import json
import re
import socket
import threading
from importlib.metadata import version

import pytest
from support.cli import one_error_line, piano_dist
from support.foundation import redis_snapshot, wait_for_workers
from support.sample_modules import Echo, Failer, Sleeper
from support.waiting import wait_until
from support.workers import WorkerProcess

from piano_dist import ConcurrentModuleManager, TaskSpec
from piano_dist.embedded import free_port

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def manager(redis_url):
    m = ConcurrentModuleManager(max_workers=0, redis_url=redis_url)
    m.register_module("echo", Echo())
    m.register_module("failer", Failer())
    m.register_module("sleeper", Sleeper())
    yield m
    m.shutdown()


@pytest.fixture
def worker(redis_url, redis_client):
    proc = WorkerProcess(redis_url, concurrency=2, name="cli-worker")
    wait_for_workers(redis_client, ["cli-worker"], procs=[proc])
    yield proc
    proc.stop()


def test_version():
    result = piano_dist(["--version"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"piano-dist {version('piano-dist')}"


MISTAKES = [
    # (argv, a word the error line must contain)
    (["no-such-command"], "no-such-command"),
    (["info", "--no-such-option"], "--no-such-option"),
    (["submit", "echo", "run", "--args", "{bad"], "--args is not valid JSON"),
    (["submit", "echo", "run", "--kwargs", "[1, 2]"], "--kwargs must be a JSON object"),
    (["submit", "echo", "run", "--priority", "9"], "'9' is not a priority"),
    (["submit", "echo", "run", "--priority", "urgent"], "use 1-5"),
    (["submit"], "Missing argument"),
    (["submit", "nope"], "'nope' is not registered"),
    (["locks", "release", "nope"], "lock nope is not held"),
    (["quota", "echo", "-3"], "below 1"),
    (["quota", "echo", "three"], "not an integer"),
    (["quota", "nope"], "'nope' is not registered"),
    (["quota", "nope", "3"], "'nope' is not registered"),
    (["status", "no-such-task"], "unknown task id no-such-task"),
    (["cancel"], "TASK_ID or --module"),
    (["cancel", "x", "--module", "echo"], "TASK_ID or --module"),
    (["cancel", "--module", "nope"], "'nope' is not registered"),
    (["unregister", "nope"], "'nope' is not registered"),
    (["tasks", "--status", "bogus"], "bogus"),
    (["tasks", "--limit", "0"], "--limit"),
    (["--prefix", "bad prefix!", "info"], "prefix"),
    (["info", "--prefix", "bad prefix!"], "prefix"),
    (["worker", "--queues", "bogus"], "bogus"),
    (["policy", "fastest"], "fastest"),
]


@pytest.mark.parametrize("argv,word", MISTAKES, ids=[" ".join(m[0]) for m in MISTAKES])
def test_a_mistake_is_one_error_line_and_exit_2(manager, redis_client, redis_url, argv, word):
    before = redis_snapshot(redis_client)
    line = one_error_line(piano_dist(argv, redis_url))
    assert word in line, line
    assert redis_snapshot(redis_client) == before


class FakeServer:
    """Something that is not Redis on a local port: it answers like a web server, or not at all."""

    def __init__(self, reply: bytes | None):
        self.reply = reply
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.reply is None:
                self.held.append(conn)  # say nothing
                continue
            try:
                conn.recv(4096)
                conn.sendall(self.reply)
            except OSError:
                pass
            conn.close()

    def close(self):
        self.sock.close()
        for conn in self.held:
            conn.close()


COMMANDS = [["info"], ["submit", "echo"], ["status", "x"], ["worker", "--burst"], ["tasks"], ["modules"]]
UNREACHABLE = [(argv, server) for server in ("nothing listening", "a web server") for argv in COMMANDS]
UNREACHABLE.append((["info"], "a silent server"))  # one is enough: each waits out the 5 s timeout


@pytest.mark.parametrize("argv,server", UNREACHABLE, ids=[f"{s}-{a[0]}" for a, s in UNREACHABLE])
def test_a_url_that_is_not_a_reachable_redis_is_one_error_line(argv, server):
    fake = None
    if server == "nothing listening":
        port = free_port()
    else:
        fake = FakeServer(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" if server == "a web server"
                          else None)
        port = fake.port
    try:
        url = f"redis://127.0.0.1:{port}/0"
        line = one_error_line(piano_dist(["--redis-url", url, *argv], None, timeout=30))
        assert line.startswith(f"error: cannot reach Redis at {url}"), line
    finally:
        if fake:
            fake.close()


def test_a_password_is_never_printed():
    url = f"redis://user:s3cret@127.0.0.1:{free_port()}/0"
    line = one_error_line(piano_dist(["info", "--url", url], None))
    assert "s3cret" not in line and "user:***@" in line, line


@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize("spelling", ["--redis-url", "--url", "-u"])
def test_global_options_before_or_after_the_command(manager, redis_url, where, spelling):
    args = [spelling, redis_url, "--prefix", "piano"]
    argv = [*args, "modules", "--json"] if where == "before" else ["modules", "--json", *args]
    result = piano_dist(argv, None, env={"REDIS_URL": None, "RQ_REDIS_URL": None})
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)) == {"echo", "failer", "sleeper"}
    # Another prefix is another deployment: nothing registered there.
    other = piano_dist(["modules", "--json", "--prefix", "elsewhere", spelling, redis_url], None)
    assert other.returncode == 0 and json.loads(other.stdout) == {}, other.stderr


@pytest.mark.parametrize("variable", ["REDIS_URL", "RQ_REDIS_URL"])
def test_rq_style_environment_variables(manager, redis_url, variable):
    result = piano_dist(["modules", "--json"], None, env={variable: redis_url, "PIANO_HOME": "/nonexistent"})
    assert result.returncode == 0, result.stderr
    assert "echo" in json.loads(result.stdout)
    url = piano_dist(["redis", "url"], None, env={variable: redis_url})
    assert url.stdout.strip() == redis_url


def test_submit_wait_prints_the_id_first_and_exits_1_on_failure(manager, worker, redis_url):
    ok = piano_dist(["submit", "echo", "run", "--args", '["hi"]', "--wait", "--wait-timeout", "30"], redis_url)
    assert ok.returncode == 0, ok.stderr
    first, *rest = ok.stdout.splitlines()
    assert re.fullmatch(r"echo_run_[0-9a-f]{16}", first), ok.stdout
    assert manager.get_task_status(first)["status"] == "completed"
    assert any(line.startswith("status") and "completed" in line for line in rest), ok.stdout

    bad = piano_dist(["submit", "failer", "--kwargs", '{"message": "no luck"}', "--wait", "--json"], redis_url)
    assert bad.returncode == 1, bad.stderr
    task_id, payload = bad.stdout.split("\n", 1)
    view = json.loads(payload)
    assert view["task_id"] == task_id and view["status"] == "failed" and "no luck" in view["error"]


def test_submit_json_and_priorities_as_numbers(manager, redis_url):
    result = piano_dist(["submit", "echo", "--priority", "1", "--json"], redis_url)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["status"] == "queued"
    assert manager.get_task_status(data["task_id"])["priority"] == "critical"
    by_name = json.loads(piano_dist(["submit", "echo", "--priority", "LOW", "--json"], redis_url).stdout)
    assert manager.get_task_status(by_name["task_id"])["priority"] == "low"


def test_status_iso_times_durations_and_dependencies(manager, worker, redis_url):
    parent = manager.submit_task("echo", "run", args=("p",))
    manager.wait([parent], timeout=30)
    blocker = manager.submit_task("sleeper", "until_cancelled", kwargs={"limit": 30})
    child = manager.submit_task("echo", "run", args=("c",), dependencies=[parent, blocker])

    view = json.loads(piano_dist(["status", child, "--json"], redis_url).stdout)
    assert view["status"] == "deferred"
    assert view["dependencies"] == [parent, blocker]
    assert view["pending_dependencies"] == [blocker]
    assert ISO.match(view["created_at"]) and view["started_at"] is None and view["wait_seconds"] >= 0

    done = json.loads(piano_dist(["status", parent, "--json"], redis_url).stdout)
    assert all(ISO.match(done[k]) for k in ("created_at", "started_at", "ended_at")), done
    assert done["dependencies"] == [] and "pending_dependencies" not in done
    assert done["run_seconds"] >= 0 and done["wait_seconds"] >= 0

    text = piano_dist(["status", child], redis_url).stdout
    rows = dict(line.split(None, 1) for line in text.splitlines() if line.strip() and " " in line.strip())
    assert ISO.match(rows["created_at"].strip()), text
    assert parent in rows["dependencies"] and blocker in rows["dependencies"], text
    assert "waiting for" in text and blocker in text.split("waiting for", 1)[1], text
    assert not re.search(r"\b1[0-9]{9}\.[0-9]+\b", text), "an epoch float was printed"
    manager.cancel_task(blocker)


def test_tasks_lists_newest_first_with_filters_and_held_tasks_as_queued(manager, worker, redis_url,
                                                                          redis_client):
    done = manager.submit_task("echo", "run", args=("done",))
    manager.wait([done], timeout=30)
    failed = manager.submit_task("failer", "run")
    manager.wait([failed], timeout=30)
    manager.pause_module("echo")
    held = [manager.submit_task("echo", "run", args=(i,)) for i in range(3)]
    # The worker sets a paused module's tasks aside on its held lists.
    wait_until(lambda: redis_client.llen("piano:held:echo:3") == 3, timeout=15, message="tasks to be held")
    deferred = manager.submit_task("echo", "run", args=("d",), dependencies=[held[0]])

    rows = json.loads(piano_dist(["tasks", "--json"], redis_url).stdout)
    assert [r["task_id"] for r in rows] == [deferred, *reversed(held), failed, done]
    for r in rows:
        assert {"task_id", "status", "module", "method", "priority", "created_at", "ended_at"} <= set(r)
        assert ISO.match(r["created_at"])
    by_id = {r["task_id"]: r for r in rows}
    assert [by_id[t]["status"] for t in held] == ["queued"] * 3
    assert by_id[done]["status"] == "completed" and ISO.match(by_id[done]["ended_at"])
    assert by_id[failed]["status"] == "failed" and by_id[deferred]["status"] == "deferred"

    def ids(*args):
        result = piano_dist(["tasks", "--json", *args], redis_url)
        assert result.returncode == 0, result.stderr
        return [r["task_id"] for r in json.loads(result.stdout)]

    assert ids("--status", "queued") == list(reversed(held))
    assert ids("--module", "failer") == [failed]
    assert ids("--module", "echo", "--limit", "2") == [deferred, held[2]]
    assert ids("--status", "completed", "--agent", "default") == [done]
    assert ids("--agent", "nobody") == []
    text = piano_dist(["tasks", "--limit", "1"], redis_url).stdout.splitlines()
    assert text[0].split()[:2] == ["TASK_ID", "STATUS"] and text[1].split()[:3] == [deferred, "deferred", "echo.run"]

    info = json.loads(piano_dist(["info", "--json"], redis_url).stdout)
    assert info["paused_modules"] == {"echo": 3}
    assert info["queues"]["piano.normal"] == 3 and info["deferred"] == 1
    assert info["counters"]["completed_tasks"] == 1 and info["counters"]["failed_tasks"] == 1
    assert info["counters"]["execution_seconds"] >= 0
    text = piano_dist(["info"], redis_url).stdout
    assert "echo: 3 tasks held" in text and "1 completed" in text and "task run time" in text, text
    manager.resume_module("echo")


def test_cancel_module_and_unregister(manager, worker, redis_url):
    running = manager.submit_task("sleeper", "until_cancelled", kwargs={"limit": 30})
    wait_until(lambda: manager.get_task_status(running)["status"] == "running", timeout=15, message="a start")
    manager.pause_module("sleeper")  # keep the rest queued
    queued = [manager.submit_task("sleeper", "run", kwargs={"seconds": 0}) for _ in range(2)]
    deferred = manager.submit_task("sleeper", "run", kwargs={"seconds": 0}, dependencies=[queued[0]])
    other = manager.submit_task("echo", "run", dependencies=[queued[1]])

    result = piano_dist(["cancel", "--module", "sleeper"], redis_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "cancelled 3 queued and deferred tasks of sleeper; 1 running asked to stop"
    assert [manager.get_task_status(t)["status"] for t in (*queued, deferred)] == ["cancelled"] * 3
    assert manager.get_task_status(other)["status"] == "dependency_failed"
    assert manager.wait([running], timeout=30)[running]["status"] == "cancelled"
    again = json.loads(piano_dist(["cancel", "--module", "sleeper", "--json"], redis_url).stdout)
    assert again == {"module": "sleeper", "cancelled": 0, "cancelling": 0}

    manager.pause_module("echo")
    waiting = manager.submit_many([TaskSpec("echo", "run", task_id="u1"),
                                   TaskSpec("echo", "run", task_id="u2", dependencies=["u1"])])
    gone = piano_dist(["unregister", "echo", "--json"], redis_url)
    assert gone.returncode == 0, gone.stderr
    assert json.loads(gone.stdout) == {"module": "echo", "unregistered": True, "cancelled": 2}
    assert [manager.get_task_status(t)["status"] for t in waiting] == ["cancelled", "cancelled"]
    modules = json.loads(piano_dist(["modules", "--json"], redis_url).stdout)
    assert "echo" not in modules
    one_error_line(piano_dist(["submit", "echo"], redis_url))


def test_policy_and_quota_json(manager, redis_url):
    assert json.loads(piano_dist(["policy", "--json"], redis_url).stdout)["policy"] == "priority_first"
    set_ = json.loads(piano_dist(["policy", "fair_share", "--json"], redis_url).stdout)
    assert set_["policy"] == "fair_share"
    assert json.loads(piano_dist(["quota", "echo", "--json"], redis_url).stdout) == {"module": "echo", "quota": None}
    assert json.loads(piano_dist(["quota", "echo", "4", "--json"], redis_url).stdout) == {"module": "echo", "quota": 4}
    assert piano_dist(["quota", "echo"], redis_url).stdout.strip() == "quota echo: 4"
    assert json.loads(piano_dist(["policy", "--json"], redis_url).stdout)["quotas"] == {"echo": 4}
    cleared = piano_dist(["quota", "echo", "--clear", "--json"], redis_url)
    assert json.loads(cleared.stdout) == {"module": "echo", "quota": None}


@pytest.mark.parametrize("command", ["pause", "resume"])
def test_pause_and_resume_json(manager, redis_url, command):
    result = piano_dist([command, "echo", "--json"], redis_url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["paused"] is (command == "pause")


def test_parked_tasks_are_listed_counted_and_cancelled(manager, redis_url, redis_client):
    # A worker that may not import the test modules parks their tasks for workers that can.
    proc = WorkerProcess(redis_url, concurrency=2, name="strict-worker", env={"PIANO_ALLOWED_MODULES": "nothing"})
    try:
        wait_for_workers(redis_client, ["strict-worker"], procs=[proc])
        parked = manager.submit_task("echo", "run", priority="high")
        wait_until(lambda: redis_client.scard("piano:parked") == 1, timeout=15, message="the task to be parked")
        rows = json.loads(piano_dist(["tasks", "--status", "queued", "--json"], redis_url).stdout)
        assert [r["task_id"] for r in rows] == [parked]
        info = json.loads(piano_dist(["info", "--json"], redis_url).stdout)
        assert info["parked_modules"] == {"echo": 1} and info["queues"]["piano.high"] == 1, info
        assert "parked: echo: 1 task" in piano_dist(["info"], redis_url).stdout
        result = piano_dist(["cancel", "--module", "echo", "--json"], redis_url)
        assert json.loads(result.stdout) == {"module": "echo", "cancelled": 1, "cancelling": 0}, result.stderr
        assert manager.get_task_status(parked)["status"] == "cancelled"
    finally:
        proc.stop()


def test_starting_the_embedded_redis_never_adds_a_line_to_an_error(tmp_path):
    env = {"PIANO_HOME": str(tmp_path / ".piano"), "REDIS_URL": None, "RQ_REDIS_URL": None}
    try:
        one_error_line(piano_dist(["submit", "nope"], None, env=env, cwd=str(tmp_path)))
        assert piano_dist(["redis", "stop"], None, env=env, cwd=str(tmp_path)).stdout.strip() == "stopped"
        ok = piano_dist(["modules"], None, env=env, cwd=str(tmp_path))
        assert ok.returncode == 0 and ok.stdout.strip() == "no modules registered", ok
        assert "piano-dist: started embedded Redis at" in ok.stderr, ok.stderr
    finally:
        piano_dist(["redis", "stop"], None, env=env, cwd=str(tmp_path))
