"""The seed's TaskScheduler behaviours, standalone (this process claims as a pseudo-worker)."""
import pytest
from support.scheduling_modules import Timed

from piano_dist import ConcurrentModuleManager, Priority, SchedulingPolicy, TaskScheduler
from piano_dist.core.types import ModuleTask


def _setup(redis_url, policy, modules=("a",)):
    manager = ConcurrentModuleManager(max_workers=0, redis_url=redis_url)
    for name in modules:
        manager.register_module(name, Timed())
    return manager, TaskScheduler(policy, redis_url=redis_url)


def _drain(scheduler, limit=100):
    taken = []
    while len(taken) < limit:
        task = scheduler.get_next_task()
        if task is None:
            break
        taken.append(task)
    return taken


def test_priority_first_orders_by_priority_then_fifo(redis_url):
    manager, scheduler = _setup(redis_url, SchedulingPolicy.PRIORITY_FIRST)
    order = [("bg", Priority.BACKGROUND), ("n1", Priority.NORMAL), ("c1", Priority.CRITICAL),
             ("n2", Priority.NORMAL), ("h1", Priority.HIGH), ("c2", Priority.CRITICAL)]
    for tid, prio in order:
        assert scheduler.schedule_task(ModuleTask(tid, "a", priority=prio))
    assert [t.task_id for t in _drain(scheduler)] == ["c1", "c2", "h1", "n1", "n2", "bg"]
    metrics = scheduler.get_scheduling_metrics()
    assert metrics["total_scheduled"] == 6 and metrics["dependency_violations"] == 0
    assert metrics["priority_distribution"] == {"critical": 2, "high": 1, "normal": 2, "background": 1}
    scheduler.shutdown()
    manager.shutdown()


def test_dependents_are_released_by_task_completed(redis_url):
    manager, scheduler = _setup(redis_url, SchedulingPolicy.WEIGHTED_PRIORITY)
    assert scheduler.schedule_task(ModuleTask("parent", "a"))
    assert scheduler.schedule_task(ModuleTask("child", "a", priority=Priority.CRITICAL), {"parent"})
    assert scheduler.get_queue_status()["blocked_tasks"] == 1
    parent = scheduler.get_next_task()
    assert parent.task_id == "parent"
    assert scheduler.get_next_task() is None  # the child waits for its parent
    assert scheduler.task_completed("parent", success=True)
    child = scheduler.get_next_task()
    assert child is not None and child.task_id == "child"
    assert scheduler.task_completed("child")
    metrics = scheduler.get_scheduling_metrics()
    assert metrics["total_completed"] == 2 and metrics["dependency_violations"] == 0
    assert not scheduler.task_completed("child")  # already recorded
    scheduler.shutdown()
    manager.shutdown()


def test_failed_parent_settles_its_dependents(redis_url):
    manager, scheduler = _setup(redis_url, SchedulingPolicy.PRIORITY_FIRST)
    scheduler.schedule_task(ModuleTask("p", "a"))
    scheduler.schedule_task(ModuleTask("c", "a"), {"p"})
    scheduler.get_next_task()
    scheduler.task_completed("p", success=False)
    assert scheduler.get_task_status("c").value == "dependency_failed"
    assert scheduler.get_next_task() is None
    manager.shutdown()


def test_quotas_favour_the_larger_quota(redis_url):
    manager, scheduler = _setup(redis_url, SchedulingPolicy.FAIR_SHARE, modules=("big", "small"))
    scheduler.set_module_quota("big", 3)
    scheduler.set_module_quota("small", 1)
    for i in range(10):
        scheduler.schedule_task(ModuleTask(f"s{i}", "small"))
        scheduler.schedule_task(ModuleTask(f"b{i}", "big"))
    taken = _drain(scheduler)
    # Nothing completes, so each module stops at its cap: 3 big, 1 small.
    assert sorted(t.module_name for t in taken) == ["big"] * 3 + ["small"]
    assert scheduler.get_queue_status()["running_by_module"] == {"big": 3, "small": 1}
    scheduler.task_completed(taken[0].task_id)
    assert scheduler.get_next_task().module_name == taken[0].module_name
    scheduler.shutdown()  # gives the rest back
    assert scheduler.get_queue_status()["running_by_module"] == {}
    manager.shutdown()


def test_round_robin_alternates_modules_within_a_level(redis_url):
    manager, scheduler = _setup(redis_url, SchedulingPolicy.ROUND_ROBIN, modules=("a", "b", "c"))
    for i in range(4):
        scheduler.schedule_task(ModuleTask(f"a{i}", "a"))
    for i in range(2):
        scheduler.schedule_task(ModuleTask(f"b{i}", "b"))
    scheduler.schedule_task(ModuleTask("c0", "c"))
    scheduler.schedule_task(ModuleTask("urgent", "a", priority=Priority.HIGH))
    assert [t.task_id for t in _drain(scheduler)] == ["urgent", "a0", "b0", "c0", "a1", "b1", "a2", "a3"]
    manager.shutdown()


def test_weighted_priority_ages_waiting_tasks(redis_url, redis_client):
    manager, scheduler = _setup(redis_url, SchedulingPolicy.WEIGHTED_PRIORITY)
    scheduler.set_policy(SchedulingPolicy.WEIGHTED_PRIORITY, aging_interval=1.0)
    scheduler.schedule_task(ModuleTask("old-low", "a", priority=Priority.LOW))
    # Pretend the LOW task was queued 3.5 s ago: 3 levels of aging at 1 s per level.
    old = int(redis_client.hget("rq:job:old-low", "piano_enq_ms")) - 3500
    redis_client.hset("rq:job:old-low", "piano_enq_ms", old)
    scheduler.schedule_task(ModuleTask("crit", "a", priority=Priority.CRITICAL))
    scheduler.schedule_task(ModuleTask("new-low", "a", priority=Priority.LOW))
    assert [t.task_id for t in _drain(scheduler)] == ["old-low", "crit", "new-low"]
    manager.shutdown()


def test_quota_must_be_a_positive_integer(redis_url):
    scheduler = TaskScheduler(None, redis_url=redis_url)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="quota"):
            scheduler.set_module_quota("a", bad)
    with pytest.raises(ValueError, match="unknown scheduling policy"):
        scheduler.set_policy("fastest")
    assert scheduler.scheduling_policy is SchedulingPolicy.PRIORITY_FIRST  # None kept the default


def test_switching_policies_keeps_every_queued_task(redis_url):
    manager, scheduler = _setup(redis_url, SchedulingPolicy.PRIORITY_FIRST, modules=("a", "b"))
    for i in range(6):
        scheduler.schedule_task(ModuleTask(f"t{i}", "a" if i % 3 else "b"))
    scheduler.cancel_task("t1")
    assert scheduler.policies.set_policy(SchedulingPolicy.ROUND_ROBIN) == 5
    first = scheduler.get_next_task()
    scheduler.set_policy(SchedulingPolicy.PRIORITY_FIRST)
    rest = _drain(scheduler)
    assert sorted([first.task_id] + [t.task_id for t in rest]) == ["t0", "t2", "t3", "t4", "t5"]
    manager.shutdown()
