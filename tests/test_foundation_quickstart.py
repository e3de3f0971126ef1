"""The seed's Quick Start, end to end, on the embedded Redis (no Redis URL configured)."""
from __future__ import annotations

import ast
import os

import pytest

from support.foundation import run_cli, run_python

# The seed's "Basic Usage" block, with only the import lines changed to piano_dist. The
# seed leaves `your_agent_state`/`agent_state` to the reader; they are defined here. The
# seed ends by reading the status once; the lines after it wait for the end and print it.
QUICK_START = '''
from piano_dist import ConcurrentModuleManager, Priority, BaseModule

your_agent_state = agent_state = {"agent_id": "quickstart"}

# Initialize the concurrent framework
manager = ConcurrentModuleManager(
    agent_state=your_agent_state,
    max_workers=4,
    max_queue_size=20
)

# Register your modules
class MyModule(BaseModule):
    def run(self):
        return "Module executed successfully"

my_module = MyModule(agent_state)
manager.register_module("my_module", my_module)

# Submit concurrent tasks
task_id = manager.submit_task(
    module_name="my_module",
    method_name="run", 
    priority=Priority.HIGH
)

# Check task status
status = manager.get_task_status(task_id)

manager.wait(task_id, timeout=30)
status = manager.get_task_status(task_id)
print(repr(status))
manager.shutdown()
'''

EMBEDDED_URL = "import piano_dist.connection as c; print(c.resolve_redis_url())"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_quick_start_on_embedded_redis(tmp_path):
    home = tmp_path / "piano-home"
    env = {"PIANO_HOME": str(home), "PIANO_REDIS_URL": None, "REDIS_URL": None}
    work = tmp_path / "project"
    work.mkdir()
    pid = None
    try:
        first = run_python(QUICK_START, env=env, cwd=str(work), timeout=90)
        assert first.returncode == 0, first.stderr
        status = ast.literal_eval(first.stdout.strip().splitlines()[-1])
        assert status["status"] == "completed"
        assert status["result"] == "Module executed successfully"
        assert status["priority"] == "high"
        # The embedded server was started once, and said so on stderr (not stdout).
        assert first.stderr.count("started embedded Redis") == 1, first.stderr
        assert "embedded Redis" not in first.stdout
        url = (home / "redis.url").read_text().strip()
        pid = int((home / "redis.pid").read_text().strip())
        assert _pid_alive(pid)

        # A second process in the same PIANO_HOME reuses that server, silently.
        second = run_python(EMBEDDED_URL, env=env, cwd=str(work))
        assert second.returncode == 0, second.stderr
        assert second.stdout.strip() == url
        assert "started embedded Redis" not in second.stderr
        # ... and sees the first process's task there.
        third = run_python(QUICK_START, env=env, cwd=str(work), timeout=90)
        assert third.returncode == 0, third.stderr
        assert "started embedded Redis" not in third.stderr
        assert ast.literal_eval(third.stdout.strip().splitlines()[-1])["status"] == "completed"
        assert (home / "redis.url").read_text().strip() == url
    finally:
        stop = run_cli(["redis", "stop"], None, env=env, cwd=str(work))
    assert stop.returncode == 0, stop.stderr
    assert stop.stdout.strip() == "stopped"
    assert pid is not None
    from support.waiting import wait_until

    wait_until(lambda: not _pid_alive(pid), timeout=10, message="the embedded redis-server to exit")
    assert not (home / "redis.url").exists()


def test_processes_starting_at_once_share_one_embedded_server(tmp_path):
    import subprocess
    import sys

    from support.workers import TESTS_DIR

    home = tmp_path / "piano-home"
    env = {k: v for k, v in os.environ.items() if k not in ("PIANO_REDIS_URL", "REDIS_URL")}
    env["PIANO_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [TESTS_DIR, env.get("PYTHONPATH")]))
    procs = [subprocess.Popen([sys.executable, "-c", EMBEDDED_URL], env=env, cwd=str(tmp_path),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    try:
        outputs = [p.communicate(timeout=60) for p in procs]
    finally:
        stop = run_cli(["redis", "stop"], None, env={"PIANO_HOME": str(home), "PIANO_REDIS_URL": None,
                                                     "REDIS_URL": None}, cwd=str(tmp_path))
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    urls = {out.strip() for out, _ in outputs}
    assert len(urls) == 1, urls
    assert sum(err.count("started embedded Redis") for _, err in outputs) == 1, [e for _, e in outputs]
    assert stop.stdout.strip() == "stopped"
