"""Nothing grows forever (issue 12.10, 12.11): finished tasks leave Redis after the
result TTL (RQ's registries included; a task's own TTL outranks the default), a TTL of
0 keeps nothing, and the backlog counter follows jobs that leave through RQ."""
from __future__ import annotations

import pytest
from rq import Queue
from rq.serializers import JSONSerializer
from support.sample_modules import Echo, Failer, Sleeper
from support.waiting import wait_until
from support.workers import WorkerProcess

from piano_dist import ConcurrentModuleManager, TaskSpec
from piano_dist.config import Timing
from piano_dist.errors import InvalidArgument, QueueFullError, UnknownTaskError

REGISTRIES = [f"rq:{kind}:piano.{level}" for kind in ("finished", "failed", "canceled")
              for level in ("critical", "high", "normal", "low", "background")]


def _registry_entries(redis_client) -> int:
    return sum(redis_client.zcard(k) for k in REGISTRIES)


def test_registry_entries_leave_with_their_expired_records(redis_url, redis_client):
    manager = ConcurrentModuleManager(max_workers=0, redis_url=redis_url, timing=Timing(result_ttl=2))
    worker = WorkerProcess(redis_url, concurrency=4, name="ttl-worker", env={"PIANO_RESULT_TTL": "2"})
    try:
        manager.register_module("echo", Echo())
        manager.register_module("failer", Failer())
        ids = [manager.submit_task("echo", "add", args=(i, i)) for i in range(10)]
        ids += [manager.submit_task("failer", priority="high") for _ in range(5)]
        doomed = manager.submit_task("echo", priority="low", dependencies=[ids[-1]])
        manager.wait(ids + [doomed], timeout=30)
        assert _registry_entries(redis_client) == 16
        wait_until(lambda: not any(redis_client.exists(f"rq:job:{t}") for t in ids + [doomed]), timeout=20,
                   message="the task records to expire")
        wait_until(lambda: _registry_entries(redis_client) == 0, timeout=20,
                   message="the sweep to drop the registry entries of expired records")
        assert not redis_client.keys("rq:results:*")
    finally:
        worker.stop()
        manager.shutdown()


def test_result_ttl_0_keeps_nothing_once_a_task_ends(redis_url, redis_client):
    manager = ConcurrentModuleManager(max_workers=2, redis_url=redis_url, timing=Timing(result_ttl=0))
    seen = []
    try:
        manager.register_module("echo", Echo())
        manager.register_module("sleeper", Sleeper())
        parent = manager.submit_task("sleeper", args=(0.3,), callback=seen.append)
        child = manager.submit_task("echo", "add", args=(1, 2), dependencies=[parent])
        final = manager.wait([parent, child], timeout=20)
        assert [final[t]["status"] for t in (parent, child)] == ["completed", "completed"]
        assert final[parent].get("record_expired") and "result" not in final[parent]
        wait_until(lambda: seen, timeout=10, message="the task's callback")
        assert seen[0]["task_id"] == parent and seen[0]["status"] == "completed"
        wait_until(lambda: not redis_client.keys("rq:job:*"), timeout=5, message="the records to go")
        with pytest.raises(UnknownTaskError):
            manager.get_result(child, timeout=5)
        assert not redis_client.keys("rq:results:*") and not redis_client.keys("piano:task:*")
        assert _registry_entries(redis_client) == 0
    finally:
        manager.shutdown()


def test_negative_result_ttl_is_refused():
    with pytest.raises(ValueError, match="PIANO_RESULT_TTL"):
        Timing(result_ttl=-1)


def test_backlog_follows_jobs_removed_through_rq(redis_url, redis_client):
    manager = ConcurrentModuleManager(max_workers=0, max_queue_size=5, redis_url=redis_url)
    try:
        manager.register_module("echo", Echo())
        for i in range(5):
            manager.submit_task("echo", "add", args=(i, 1))
        with pytest.raises(QueueFullError):
            manager.submit_task("echo", "add", args=(9, 9))
        # rq-dashboard's "empty queue" button: RQ deletes the jobs and the queue.
        Queue("piano.normal", connection=redis_client, serializer=JSONSerializer).empty()
        for i in range(5):
            manager.submit_task("echo", "add", args=(i, 2))
        with pytest.raises(QueueFullError):
            manager.submit_task("echo", "add", args=(9, 9))
        assert int(redis_client.hget("piano:stats", "backlog")) == 5
        Queue("piano.normal", connection=redis_client, serializer=JSONSerializer).empty()
        assert manager.submit_many([{"module_name": "echo"} for _ in range(5)])
    finally:
        manager.shutdown()


def test_the_sweep_recounts_the_backlog(redis_url, redis_client):
    manager = ConcurrentModuleManager(max_workers=0, redis_url=redis_url)
    worker = None
    try:
        manager.register_module("echo", Echo())
        manager.pause_module("echo")  # held, not run: the count must include held tasks
        held = [manager.submit_task("echo", "add", args=(i, 1)) for i in range(3)]
        redis_client.hset("piano:stats", "backlog", 1000)  # drifted
        worker = WorkerProcess(redis_url, concurrency=1, name="sweeper")
        wait_until(lambda: int(redis_client.hget("piano:stats", "backlog")) == 3, timeout=20,
                   message="the sweep to recount the backlog")
        assert all(manager.get_task_status(t)["status"] == "queued" for t in held)
    finally:
        if worker:
            worker.stop()
        manager.shutdown()


def test_modules_with_nothing_running_leave_no_running_count(redis_url, redis_client):
    """The cluster-wide running count per module is dropped at zero: a simulation with a
    module per agent would otherwise keep a field for every module it ever ran."""
    manager = ConcurrentModuleManager(max_workers=0, redis_url=redis_url)
    worker = WorkerProcess(redis_url, concurrency=4, name="running-count-worker")
    try:
        names = [f"echo{i}" for i in range(12)]
        for name in names:
            manager.register_module(name, Echo())
        ids = [manager.submit_task(name, "add", args=(1, 2)) for name in names]
        final = manager.wait(ids, timeout=30)
        assert {final[t]["status"] for t in ids} == {"completed"}
        assert redis_client.hlen(manager.keys.sched_part("running")) == 0
    finally:
        worker.stop()
        manager.shutdown()


def test_a_tasks_own_result_ttl_outranks_the_default(redis_url, redis_client):
    """TaskSpec(result_ttl=N) keeps that task's record N seconds whoever records its end
    (here a worker at the default 24 h), a dependent settled by its parent's failure
    included; a group's counters stay for the longest TTL of its tasks."""
    manager = ConcurrentModuleManager(max_workers=0, redis_url=redis_url)
    worker = WorkerProcess(redis_url, concurrency=4, name="own-ttl-worker")
    try:
        manager.register_module("echo", Echo())
        manager.register_module("failer", Failer())
        manager.register_module("sleeper", Sleeper())
        gone, short, default, failing = manager.submit_many([
            TaskSpec("echo", "add", (1, 2), result_ttl=0),
            TaskSpec("echo", "add", (1, 2), result_ttl=600),
            TaskSpec("echo", "add", (1, 2)),
            TaskSpec("failer"),
        ])
        [settled] = manager.submit_many([TaskSpec("echo", dependencies=[failing], result_ttl=0)])
        # A parent's own TTL is its own: a dependent it settles keeps the default.
        [unkept_failing] = manager.submit_many([TaskSpec("failer", result_ttl=0)])
        [default_settled] = manager.submit_many([TaskSpec("echo", dependencies=[unkept_failing])])
        [first] = manager.submit_many([TaskSpec("sleeper", args=(0.2,), group="mixed", result_ttl=7200)])
        [last] = manager.submit_many([TaskSpec("echo", dependencies=[first], group="mixed", result_ttl=0)])
        ids = [gone, short, default, failing, settled, first, last, unkept_failing, default_settled]
        final = manager.wait(ids, timeout=30)
        assert [final[t]["status"] for t in ids] == ["completed", "completed", "completed", "failed",
                                                      "dependency_failed", "completed", "completed", "failed",
                                                      "dependency_failed"]
        wait_until(lambda: not any(redis_client.exists(f"rq:job:{t}") for t in (gone, settled, last, unkept_failing)),
                   timeout=5, message="the records of tasks with result_ttl=0 to go")
        assert redis_client.ttl(f"rq:job:{default_settled}") > 86_000
        assert 590_000 < redis_client.pttl(f"rq:job:{short}") <= 600_000
        assert redis_client.hget(f"rq:job:{short}", "result_ttl") == b"600"  # what RQ's tools show
        assert not redis_client.hexists(f"rq:job:{short}", "piano_result_ttl")
        ended = redis_client.zscore("rq:finished:piano.normal", short)
        assert ended is not None and 590 < ended - redis_client.time()[0] <= 601  # scored by when it expires
        assert redis_client.ttl(f"rq:job:{default}") > 86_000 and redis_client.ttl(f"rq:job:{failing}") > 86_000
        assert redis_client.ttl(f"rq:job:{first}") > 7_000
        # The group's last task keeps nothing, yet its counters stay as long as its first's record.
        assert redis_client.ttl(manager.keys.group("mixed")) > 7_000
    finally:
        worker.stop()
        manager.shutdown()


def test_a_task_cancelled_while_it_waits_keeps_its_own_result_ttl(redis_url, redis_client):
    manager = ConcurrentModuleManager(max_workers=0, redis_url=redis_url)
    try:
        manager.register_module("echo", Echo())
        manager.pause_module("echo")
        unkept, short = manager.submit_many([TaskSpec("echo", result_ttl=0), TaskSpec("echo", result_ttl=300)])
        assert manager.cancel_task(unkept) and manager.cancel_task(short)
        wait_until(lambda: not redis_client.exists(f"rq:job:{unkept}"), timeout=5, message="the unkept record to go")
        assert 290 < redis_client.ttl(f"rq:job:{short}") <= 300
        assert manager.get_task_status(short)["status"] == "cancelled"
    finally:
        manager.shutdown()


def test_a_result_ttl_read_back_from_redis_that_is_not_whole_seconds_is_ignored(redis_url, redis_client):
    manager = ConcurrentModuleManager(max_workers=0, redis_url=redis_url)
    worker = None
    try:
        manager.register_module("echo", Echo())
        manager.pause_module("echo")
        tampered = manager.submit_many([TaskSpec("echo", "add", (1, 2), result_ttl=5) for _ in range(4)])
        for task_id, junk in zip(tampered, ("-3", "1.5", "soon", "99999999999999999999")):
            redis_client.hset(f"rq:job:{task_id}", "piano_result_ttl", junk)
        manager.resume_module("echo")
        worker = WorkerProcess(redis_url, concurrency=4, name="junk-ttl-worker")
        final = manager.wait(tampered, timeout=30)
        assert {final[t]["status"] for t in tampered} == {"completed"}
        assert all(redis_client.ttl(f"rq:job:{t}") > 86_000 for t in tampered)  # PIANO_RESULT_TTL's 24 h
    finally:
        if worker:
            worker.stop()
        manager.shutdown()


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10", 2**31])
def test_a_result_ttl_that_is_not_whole_seconds_in_range_is_refused(redis_url, redis_client, bad):
    manager = ConcurrentModuleManager(max_workers=0, redis_url=redis_url)
    try:
        manager.register_module("echo", Echo())
        kept = manager.submit_task("echo", "add", args=(1, 1))
        with pytest.raises(InvalidArgument, match="result_ttl must be whole seconds"):
            manager.submit_many([TaskSpec("echo", "add", (2, 2)), TaskSpec("echo", result_ttl=bad)])
        assert redis_client.lrange("rq:queue:piano.normal", 0, -1) == [kept.encode()]
        assert manager.submit_many([TaskSpec("echo", result_ttl=2**31 - 1), TaskSpec("echo", result_ttl=0)])
    finally:
        manager.shutdown()
