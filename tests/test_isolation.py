"""Timeouts with process isolation: the task's child process is killed at the deadline."""
import os

from support.sample_modules import Echo, Spinner
from support.waiting import wait_until
from support.workers import WorkerProcess

from piano_dist import ConcurrentModuleManager


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A killed child may linger as a zombie until its parent reaps it; the reaping can
    # happen between the kill probe and reading its stat (ENOENT on open, ESRCH on read).
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def test_process_isolation_kills_the_task_at_its_deadline(redis_url, redis_client):
    manager = ConcurrentModuleManager(max_workers=0, redis_url=redis_url)
    manager.register_module("spinner", Spinner())
    manager.register_module("echo", Echo())
    worker = WorkerProcess(redis_url, concurrency=1, env={"PIANO_ISOLATION": "process"})
    try:
        slow = manager.submit_task("spinner", kwargs={"seconds": 30}, timeout=0.5)
        child = manager.submit_task("echo", args=(1,), dependencies={slow})
        after = manager.submit_task("echo", "add", args=(1, 2))
        statuses = manager.wait([slow, child, after], timeout=20)
        assert statuses[slow]["status"] == "timed_out"
        assert statuses[child]["status"] == "dependency_failed"
        # The one slot was freed: the next task ran although the spinner's budget was 30 s.
        assert statuses[after]["status"] == "completed" and statuses[after]["result"] == 3
        pid = int(redis_client.lrange("test:spinner-pids", 0, -1)[0])
        assert pid != worker.pid
        wait_until(lambda: _gone(pid), timeout=10, message=f"task process {pid} to be gone")
    finally:
        worker.stop()
        manager.shutdown()


def test_process_isolation_returns_results_and_errors(redis_url):
    manager = ConcurrentModuleManager(max_workers=0, redis_url=redis_url)
    manager.register_module("echo", Echo())
    worker = WorkerProcess(redis_url, concurrency=2, env={"PIANO_ISOLATION": "process"})
    try:
        ok = manager.submit_task("echo", "add", args=(2, 5))
        bad = manager.submit_task("echo", "add", args=(2, "x"))
        statuses = manager.wait([ok, bad], timeout=20)
        assert statuses[ok]["result"] == 7
        assert statuses[bad]["status"] == "failed" and "TypeError" in statuses[bad]["error"]
    finally:
        worker.stop()
        manager.shutdown()
