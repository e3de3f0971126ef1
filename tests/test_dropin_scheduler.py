"""The standalone TaskScheduler: ModuleTasks for any module name on queues of its own,
ordered by the cluster's policy; private per instance, or shared by name."""
import pytest
from support.workers import WorkerProcess

from piano_dist import ConcurrentModuleManager, ModuleTask, Priority, SchedulingPolicy, TaskScheduler
from piano_dist.keys import Keys


def _drain(scheduler):
    out = []
    while (task := scheduler.get_next_task()) is not None:
        out.append(task)
    return out


def test_any_module_name_is_scheduled_without_registration(redis_url, redis_client):
    scheduler = TaskScheduler(SchedulingPolicy.PRIORITY_FIRST, max_pending_tasks=10)
    assert scheduler.schedule_task(ModuleTask("n", "nobody", "run", priority=Priority.NORMAL))
    assert scheduler.schedule_task(ModuleTask("c", "no.such-module", "think", args=(1,), priority=Priority.CRITICAL))
    first = scheduler.get_next_task()
    assert (first.task_id, first.module_name, first.method_name, first.args) == ("c", "no.such-module", "think", (1,))
    assert redis_client.hlen(Keys().modules) == 0  # nothing was registered
    metrics = scheduler.get_scheduling_metrics()
    assert metrics.total_scheduled == metrics["total_scheduled"] == 2
    assert metrics.priority_distribution == {"critical": 1, "normal": 1}
    with pytest.raises(AttributeError):
        metrics.no_such_figure
    with pytest.raises(ValueError, match="module name 'bad name' is invalid"):
        scheduler.schedule_task(ModuleTask("x", "bad name"))
    with pytest.raises(ValueError, match="private"):
        scheduler.schedule_task(ModuleTask("y", "m", "_secret"))
    scheduler.shutdown()


def test_two_schedulers_are_independent_and_shutdown_leaves_nothing_behind(redis_url, redis_client):
    a = TaskScheduler(SchedulingPolicy.PRIORITY_FIRST, max_pending_tasks=3)
    b = TaskScheduler(None)
    for i in range(3):
        assert a.schedule_task(ModuleTask(f"a{i}", "m"))
    assert not a.schedule_task(ModuleTask("a3", "m"))  # max_pending_tasks reached
    assert b.get_next_task() is None  # b does not see a's tasks
    taken = a.get_next_task()
    assert not a.schedule_task(ModuleTask("a4", "m"))  # taken, not completed: still pending
    assert a.task_completed(taken.task_id)
    assert a.schedule_task(ModuleTask("a5", "m"))
    a.shutdown()  # a private scheduler: its tasks are cancelled, its queues forgotten
    assert a.get_task_status("a1").value == "cancelled"
    assert not [q for q in redis_client.smembers("rq:queues") if b"@" + a.keys.queue_group.encode() in q]
    assert redis_client.scard(Keys().sched_part("origins")) == 5  # b's only
    assert b.get_queue_status()["pending_tasks"] == 0
    with pytest.raises(RuntimeError, match="shut down"):
        a.schedule_task(ModuleTask("a6", "m"))
    b.shutdown()


def test_a_named_scheduler_is_shared(redis_url):
    producer = TaskScheduler(SchedulingPolicy.PRIORITY_FIRST, name="planner")
    consumer = TaskScheduler(None, name="planner")  # another process would do the same
    producer.schedule_task(ModuleTask("p1", "planning"))
    producer.schedule_task(ModuleTask("p2", "planning"), dependencies={"p1"})
    task = consumer.get_next_task()
    assert task.task_id == "p1" and consumer.get_next_task() is None
    assert producer.task_completed("p1")  # completed by another instance than the taker
    assert consumer.get_next_task().task_id == "p2"
    producer.shutdown()  # a named scheduler keeps its tasks for the others
    assert consumer.get_task_status("p2").value == "running"
    consumer.shutdown()  # gives p2 back
    again = TaskScheduler(None, name="planner")
    assert again.get_next_task().task_id == "p2"
    again.shutdown()


def test_workers_never_run_a_schedulers_tasks_and_quotas_are_the_clusters(redis_url):
    manager = ConcurrentModuleManager(max_workers=0, redis_url=redis_url)
    from support.plain_modules import PlainCounter
    manager.register_module("counter", PlainCounter())
    worker = WorkerProcess(redis_url, concurrency=2)
    scheduler = TaskScheduler(SchedulingPolicy.FAIR_SHARE)
    try:
        scheduler.set_module_quota("counter", 1)
        scheduler.schedule_task(ModuleTask("s1", "counter"))
        scheduler.schedule_task(ModuleTask("s2", "counter"))
        ran = manager.submit_task("counter", "run")  # the worker runs the cluster's task
        assert manager.get_result(ran, timeout=30)["count"] == 1
        assert scheduler.get_task_status("s1").value == "queued"  # ... but not the scheduler's
        assert scheduler.get_next_task().task_id == "s1"
        assert scheduler.get_next_task() is None  # counter is at its cluster-wide quota of 1
        assert scheduler.get_queue_status()["running_by_module"] == {"counter": 1}
    finally:
        scheduler.shutdown()
        worker.stop()
        manager.shutdown()


def test_the_managers_scheduler_is_the_clusters(redis_url):
    with ConcurrentModuleManager(max_workers=0, redis_url=redis_url) as manager:
        scheduler = manager.task_scheduler
        assert scheduler.is_cluster and scheduler.keys.queue_names == Keys().queue_names
        from piano_dist import UnknownModuleError
        with pytest.raises(UnknownModuleError):
            scheduler.schedule_task(ModuleTask("x", "nobody"))


def test_a_policy_change_indexes_a_schedulers_queued_tasks(redis_url):
    scheduler = TaskScheduler(SchedulingPolicy.PRIORITY_FIRST)
    for i in range(3):
        scheduler.schedule_task(ModuleTask(f"a{i}", "a"))
    scheduler.schedule_task(ModuleTask("b0", "b"))
    assert scheduler.policies.set_policy(SchedulingPolicy.ROUND_ROBIN) == 4
    assert [t.task_id for t in _drain(scheduler)] == ["a0", "b0", "a1", "a2"]
    scheduler.shutdown()


def test_a_schedulers_tasks_belong_to_its_deployment_only(redis_url):
    ours = TaskScheduler(None, prefix="piano")
    theirs = TaskScheduler(None, prefix="piano.other")  # a prefix that starts like ours
    ours.schedule_task(ModuleTask("g1", "m"))
    assert ours.get_task_status("g1").value == "queued"
    assert theirs.get_task_status("g1") is None and not theirs.cancel_task("g1")
    with pytest.raises(Exception, match="dependency g1 is not a known task"):
        theirs.schedule_task(ModuleTask("g2", "m"), dependencies={"g1"})
    assert ours.schedule_task(ModuleTask("g3", "m"), dependencies={"g1"})
    assert Keys("piano").owns_origin("piano@sched-x.normal") and not Keys("piano").owns_origin("piano.other.normal")
    assert not Keys("piano.other").owns_origin("piano@sched-x.normal")
    ours.shutdown()
    theirs.shutdown()


def test_task_completed_checks_the_result_like_a_worker(redis_url):
    """A result that would not read back the same (NaN, a non-JSON object, one over the
    size limit) is refused with an error naming it; the task stays taken and can still be
    completed with a good one. It used to be stored as its repr, silently changed."""
    from piano_dist import InvalidArgument

    scheduler = TaskScheduler(None)
    try:
        scheduler.schedule_task(ModuleTask("r1", "m"))
        assert scheduler.get_next_task().task_id == "r1"
        with pytest.raises(InvalidArgument, match="result"):
            scheduler.task_completed("r1", result=float("nan"))
        with pytest.raises(InvalidArgument, match="result"):
            scheduler.task_completed("r1", result=object())
        assert scheduler.get_task_status("r1").value == "running"
        assert scheduler.task_completed("r1", result={"ok": [1, 2]})
        assert scheduler.get_task_status("r1").value == "completed"
        assert scheduler.client.get_status("r1")["result"] == {"ok": [1, 2]}
    finally:
        scheduler.shutdown()
