"""Fault paths of the worker (issue 12): whatever a task, its module or Redis does, the
task ends in a definite status, its slot serves the next task, and the worker stays
quiet and responsive."""
from __future__ import annotations

import signal

from support.waiting import wait_until
from support.workers import WorkerProcess


def _idle(redis_client, name: str) -> bool:
    return redis_client.hget(f"rq:worker:{name}", "state") == b"idle"


def test_idle_worker_pinned_to_one_cpu_stops_at_once_on_sigterm(redis_url, redis_client):
    """RQ stopped its command listener in an order that raced with redis-py 8's listener
    thread: on one CPU an idle worker mostly sat out a 60 s wait after SIGTERM."""
    for i in range(5):
        worker = WorkerProcess(redis_url, concurrency=2, name=f"idle-{i}", cpus={0})
        try:
            wait_until(lambda: _idle(redis_client, worker.name), timeout=20, message="the worker to be idle")
            worker.signal(signal.SIGTERM)
            assert worker.wait(timeout=10) == 0
        finally:
            worker.stop()
