"""Cancelling queued, deferred and running tasks, and what happens to their descendants."""
import os
import subprocess
import sys

import pytest
from rq.job import Job
from rq.results import Result
from rq.serializers import JSONSerializer
from support.failure_modules import RunLog, parse_run
from support.failure_procs import Workers
from support.sample_modules import Sleeper
from support.waiting import wait_until
from support.workers import worker_env

from piano_dist import ConcurrentModuleManager, TaskSpec


@pytest.fixture
def manager(redis_url):
    m = ConcurrentModuleManager(max_workers=0, redis_url=redis_url)
    m.register_module("log", RunLog())
    m.register_module("sleeper", Sleeper())
    yield m
    m.shutdown()


def spec(tid, deps=(), allow=(), label=None):
    return TaskSpec("log", "run", args=(label or tid,), task_id=tid, dependencies=list(deps) or None,
                    allow_failure=list(allow) or None)


def ran_labels(redis_client):
    return [parse_run(e)["label"] for e in redis_client.lrange("test:runs", 0, -1)]


def test_cancel_queued_and_deferred_tasks_cascade_and_never_run(manager, redis_url, redis_client):
    manager.submit_many([
        spec("Q"), spec("Qc", ["Q"]), spec("Qg", ["Qc"]), spec("Qa", ["Q"], allow=["Q"]),
        spec("B"), spec("D", ["B"]), spec("Dc", ["D"]), spec("Da", ["D"], allow=["D"]),
        spec("Dga", ["Dc"], allow=["Dc"]),
    ])
    assert manager.get_task_status("Q")["status"] == "queued"
    assert manager.get_task_status("D")["status"] == "deferred"

    assert manager.cancel_task("Q") is True
    assert manager.cancel_task("D") is True
    # At once, no worker involved:
    for tid in ("Q", "D"):
        st = manager.get_task_status(tid)
        assert st["status"] == "cancelled" and st["attempts"] == 0
    for tid, ancestor in (("Qc", "Q"), ("Qg", "Q"), ("Dc", "D")):
        st = manager.get_task_status(tid)
        assert st["status"] == "dependency_failed", (tid, st)
        assert ancestor in st["error"] and "cancelled" in st["error"], (tid, st["error"])
    assert manager.cancel_task("Q") is False  # already ended

    with Workers(redis_url) as workers:
        workers.start(concurrency=2, log_level="WARNING")
        final = manager.wait(["B", "Qa", "Da", "Dga"], timeout=30)
    # Children that tolerate the cancelled parent run; so does one tolerating a cascaded failure.
    assert {tid: st["status"] for tid, st in final.items()} == dict.fromkeys(final, "completed")
    labels = ran_labels(redis_client)
    assert sorted(labels) == ["B", "Da", "Dga", "Qa"], labels
    assert all(manager.get_task_status(t)["status"] == "cancelled" for t in ("Q", "D"))
    assert redis_client.hget("piano:stats", "backlog") == b"0"


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_cancel_running_task_ends_cancelled_when_it_returns(manager, redis_url, redis_client, isolation):
    r = manager.submit_task("sleeper", "until_cancelled", kwargs={"limit": 60})
    child = manager.submit_task("log", "run", args=("child",), dependencies=[r])
    grandchild = manager.submit_task("log", "run", args=("grandchild",), dependencies=[child])
    tolerant = manager.submit_task("log", "run", args=("tolerant",), dependencies=[r], allow_failure=[r])
    with Workers(redis_url) as workers:
        # Thread: the run sees ctx.cancelled and returns. Process: its child process is killed.
        workers.start(concurrency=2, log_level="WARNING", env={"PIANO_ISOLATION": isolation})
        wait_until(lambda: manager.get_task_status(r)["status"] == "running", timeout=20, message="task running")
        assert manager.cancel_task(r) is True
        st = manager.get_task_status(r)
        assert st["status"] in ("running", "cancelled")
        # The run sees ctx.cancelled and returns long before its 60 s limit.
        final = manager.wait([r, child, grandchild, tolerant], timeout=15)
    assert final[r]["status"] == "cancelled"
    assert "result" not in final[r] and "cancelled" in final[r]["error"]
    assert redis_client.hget(f"rq:job:{r}", "piano_result") is None
    for tid in (child, grandchild):
        assert final[tid]["status"] == "dependency_failed"
        assert r in final[tid]["error"], final[tid]["error"]
    assert final[tolerant]["status"] == "completed"
    assert sorted(ran_labels(redis_client)) == ["tolerant"]
    # RQ's view agrees: the job is canceled and no successful result of it is recorded.
    job = Job.fetch(r, connection=redis_client, serializer=JSONSerializer)
    assert job.get_status().value == "canceled"
    latest = job.latest_result()
    assert latest is None or latest.type != Result.Type.SUCCESSFUL, \
        "the discarded return value of a cancelled task was recorded as a successful RQ result"


def test_cli_cancel_of_a_queued_task(manager, redis_url, redis_client):
    q = manager.submit_task("log", "run", args=("q",))
    child = manager.submit_task("log", "run", args=("child",), dependencies=[q])
    out = subprocess.run([sys.executable, "-m", "piano_dist.cli.main", "cancel", q],
                         env=worker_env(redis_url), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{q}: cancelled"
    assert manager.get_task_status(q)["status"] == "cancelled"
    st = manager.get_task_status(child)
    assert st["status"] == "dependency_failed" and q in st["error"]
    again = subprocess.run([sys.executable, "-m", "piano_dist.cli.main", "cancel", q],
                           env=worker_env(redis_url), capture_output=True, text=True, timeout=60)
    assert again.returncode != 0 and "already ended cancelled" in again.stderr
    assert redis_client.llen("test:runs") == 0
    assert redis_client.llen("rq:queue:piano.normal") == 0
