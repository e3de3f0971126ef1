"""Dead and stopping workers: SIGKILL (lease expiry, re-queue, attempts, abandonment)
and SIGTERM (finish running tasks, take no new work; twice: give them back at once)."""
import os
import signal

import pytest
from support.failure_modules import RunLog, WorkerKiller, parse_run
from support.failure_procs import Workers
from support.waiting import wait_until

from piano_dist import ConcurrentModuleManager


@pytest.fixture
def manager(redis_url):
    m = ConcurrentModuleManager(max_workers=0, redis_url=redis_url)
    m.register_module("log", RunLog())
    m.register_module("killer", WorkerKiller())
    yield m
    m.shutdown()


def runs(redis_client):
    return [parse_run(e) for e in redis_client.lrange("test:runs", 0, -1)]


def test_task_of_a_killed_worker_is_requeued_and_run_by_a_live_one(manager, redis_url, redis_client):
    with Workers(redis_url) as workers:
        a = workers.start(concurrency=1, log_level="WARNING")
        b = workers.start(concurrency=1, log_level="WARNING")
        tid = manager.submit_task("log", "run", args=("T",), kwargs={"sleep": 1.5})
        child = manager.submit_task("log", "run", args=("child",), dependencies=[tid])
        wait_until(lambda: redis_client.llen("test:runs") == 1, timeout=20, message="the task to start")
        first = runs(redis_client)[0]
        victim, survivor = (a, b) if first["worker"] == a.name else (b, a)
        assert manager.get_task_status(tid)["worker"] == victim.name
        victim.kill()

        # Lease 2 s, sweep every 0.5 s: the survivor re-queues and runs it within a few seconds.
        wait_until(lambda: redis_client.llen("test:runs") == 2, timeout=8,
                   message="the task to be re-queued and started again")
        final = manager.wait([tid, child], timeout=15)
    st = final[tid]
    assert st["status"] == "completed" and st["worker"] == survivor.name
    assert st["attempts"] == 2
    assert victim.name in st["last_loss"] and "stopped renewing its lease" in st["last_loss"]
    second = runs(redis_client)[1]
    assert (second["label"], second["worker"], second["attempt"]) == ("T", survivor.name, 2)
    assert final[child]["status"] == "completed"
    assert int(redis_client.hget("piano:stats", "requeued")) == 1


def test_task_that_kills_every_worker_ends_failed_as_abandoned(manager, redis_url, redis_client):
    with Workers(redis_url) as workers:
        pool = [workers.start(concurrency=1, log_level="WARNING") for _ in range(2)]
        tid = manager.submit_task("killer", "run", max_attempts=2)
        child = manager.submit_task("log", "run", args=("child",), dependencies=[tid])
        tolerant = manager.submit_task("log", "run", args=("tolerant",), dependencies=[tid], allow_failure=[tid])

        def ended():
            # Replace dead workers, as a supervisor would: someone must be alive to sweep.
            for i, w in enumerate(pool):
                if not w.alive():
                    pool[i] = workers.start(concurrency=1, log_level="WARNING")
            return manager.get_task_status(tid)["status"] not in ("queued", "running")

        wait_until(ended, timeout=40, interval=0.1, message="the worker-killing task to be abandoned")
        final = manager.wait([tid, child, tolerant], timeout=15)
    st = final[tid]
    assert st["status"] == "failed", st
    assert "abandoned" in st["error"] and "gave up after 2 attempts" in st["error"]
    assert st["attempts"] == 2
    assert redis_client.llen("test:killer_runs") == 2
    assert final[child]["status"] == "dependency_failed" and tid in final[child]["error"]
    assert "abandoned" in final[child]["error"]
    assert final[tolerant]["status"] == "completed"
    assert [r["label"] for r in runs(redis_client)] == ["tolerant"]


def test_sigterm_finishes_running_tasks_takes_no_new_work_and_loses_nothing(manager, redis_url, redis_client):
    with Workers(redis_url) as workers:
        w1 = workers.start(concurrency=2, log_level="INFO")
        running = [manager.submit_task("log", "run", args=(f"R{i}",), kwargs={"sleep": 2.0}) for i in range(2)]
        wait_until(lambda: redis_client.llen("test:runs") == 2, timeout=20, message="both tasks running on w1")
        queued = [manager.submit_task("log", "run", args=(f"Q{i}",)) for i in range(3)]
        w1.signal(signal.SIGTERM)
        assert w1.wait(timeout=20) == 0
        log = w1.log()
        assert "SIGTERM received, finishing running tasks" in log

        done = manager.wait(running, timeout=1)
        assert all(st["status"] == "completed" and st["worker"] == w1.name for st in done.values())
        for tid in queued:
            st = manager.get_task_status(tid)
            assert st["status"] == "queued" and st["attempts"] == 0, st
        assert sorted(r["label"] for r in runs(redis_client)) == ["R0", "R1"]
        # The stopped worker left the live view.
        assert not redis_client.exists(f"piano:worker:{w1.name}:metrics")

        w2 = workers.start(concurrency=2, log_level="WARNING")
        later = manager.wait(queued, timeout=20)
    assert all(st["status"] == "completed" and st["worker"] == w2.name for st in later.values())
    assert sorted(r["label"] for r in runs(redis_client)) == ["Q0", "Q1", "Q2", "R0", "R1"]


def test_second_sigterm_stops_at_once_and_gives_running_tasks_back(manager, redis_url, redis_client):
    with Workers(redis_url) as workers:
        w1 = workers.start(concurrency=2, log_level="INFO")
        tasks = [manager.submit_task("log", "run", args=(f"R{i}",), kwargs={"sleep": 4.0}) for i in range(2)]
        wait_until(lambda: redis_client.llen("test:runs") == 2, timeout=20, message="both tasks running on w1")
        w1.signal(signal.SIGTERM)
        wait_until(lambda: "SIGTERM received" in w1.log(), timeout=5, message="the first SIGTERM handled")
        w1.signal(signal.SIGTERM)
        w1.wait(timeout=20)
        assert "stopping now, giving running tasks back" in w1.log()

        # Given back, not finished by w1 and not lost: queued again, attempt not counted.
        for tid in tasks:
            st = manager.get_task_status(tid)
            assert st["status"] == "queued", (tid, st)
            assert st["attempts"] == 0 and "shut down" in st.get("waiting_because", ""), st

        w2 = workers.start(concurrency=2, log_level="WARNING")
        final = manager.wait(tasks, timeout=20)
    assert all(st["status"] == "completed" and st["worker"] == w2.name for st in final.values())
    by_label = {}
    for r in runs(redis_client):
        by_label.setdefault(r["label"], []).append(r["worker"])
    assert by_label == {"R0": [w1.name, w2.name], "R1": [w1.name, w2.name]}


def _pid_running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # reaped before the open, or between open and read
        return False


def test_process_isolation_task_dies_with_its_sigkilled_worker(manager, redis_url, redis_client):
    """A forked task process must not outlive its SIGKILLed worker: the task is re-run
    elsewhere, and an orphan would keep running the old attempt alongside it."""
    with Workers(redis_url) as workers:
        w1 = workers.start(concurrency=1, log_level="WARNING", env={"PIANO_ISOLATION": "process"})
        tid = manager.submit_task("log", "run", args=("T",), kwargs={"sleep": 4.0})
        wait_until(lambda: redis_client.llen("test:runs") == 1, timeout=20, message="the task to start")
        child_pid = runs(redis_client)[0]["pid"]
        assert child_pid != w1.pid
        w1.kill()
        try:
            wait_until(lambda: not _pid_running(child_pid), timeout=1.5,
                       message=f"task process {child_pid} to die with its worker")
        finally:
            if _pid_running(child_pid):
                os.kill(child_pid, signal.SIGKILL)
        w2 = workers.start(concurrency=1, log_level="WARNING")
        st = manager.wait([tid], timeout=20)[tid]
    assert st["status"] == "completed" and st["worker"] == w2.name and st["attempts"] == 2


def test_cancel_requested_while_its_worker_is_dead_does_not_run_it_again(manager, redis_url, redis_client):
    with Workers(redis_url) as workers:
        a = workers.start(concurrency=1, log_level="WARNING")
        tid = manager.submit_task("log", "run", args=("T",), kwargs={"sleep": 3.0})
        child = manager.submit_task("log", "run", args=("child",), dependencies=[tid])
        wait_until(lambda: redis_client.llen("test:runs") == 1, timeout=20, message="the task to start")
        a.kill()
        assert manager.cancel_task(tid) is True  # still "running" until its lease lapses
        workers.start(concurrency=1, log_level="WARNING")
        final = manager.wait([tid, child], timeout=20)
    assert final[tid]["status"] == "cancelled", final[tid]
    assert final[child]["status"] == "dependency_failed" and tid in final[child]["error"]
    assert [r["label"] for r in runs(redis_client)] == ["T"], "a cancelled task was run again"
