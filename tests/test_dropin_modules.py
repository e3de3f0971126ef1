"""Seed-style modules on piano-dist: plain objects as modules, re-registration from a new
manager, and objects as task arguments (kept by the submitting process)."""
import os
import threading

import pytest
from support.plain_modules import OtherCounter, PlainCounter
from support.waiting import wait_until
from support.workers import WorkerProcess

from piano_dist import (AccessMode, ConcurrentModuleManager, ModuleState, ResourceType, SecurityError,
                        TaskScheduler)
from piano_dist.executor import ModuleExecutor
from piano_dist.keys import Keys


def _manager(redis_url, workers=2, **kw):
    return ConcurrentModuleManager(max_workers=workers, redis_url=redis_url, **kw)


def test_a_plain_object_is_a_module_and_runs_in_the_registering_process(redis_url):
    class Local:  # defined here: no worker could import it
        def __init__(self):
            self.seen = []

        def process_data(self, data):
            self.seen.append(data)
            return f"processed_{data}"

    module = Local()
    with _manager(redis_url) as manager:
        manager.register_module("local", module)
        assert manager.module_states["local"] is ModuleState.IDLE
        task = manager.submit_task("local", "process_data", args=("x",))
        assert manager.get_result(task, timeout=10) == "processed_x"
        assert module.seen == ["x"]  # the registered object itself ran it
        registration = manager.client.registry.get("local")
        assert registration.methods == ["process_data"]
        with pytest.raises(SecurityError, match="no public method 'nope'"):
            manager.submit_task("local", "nope")


@pytest.mark.parametrize("thing, text", [
    (None, "must be an instance"), (PlainCounter, "must be an instance"), (os, "must be an instance"),
    (len, "must be an instance"), (object(), "has no public methods")])
def test_what_cannot_be_a_module_is_refused_and_nothing_stored(redis_url, redis_client, thing, text):
    with _manager(redis_url, workers=0) as manager:
        with pytest.raises(TypeError, match=text):
            manager.register_module("thing", thing)
        assert redis_client.hlen(Keys().modules) == 0 and manager.modules == {}


def test_a_new_manager_adopts_a_registration_of_the_same_class(redis_url):
    first = _manager(redis_url)
    first.register_module("counter", PlainCounter(start=100))
    first.shutdown()
    second = _manager(redis_url)  # a seed test's setUp: a new manager, the same registration
    second.register_module("counter", PlainCounter())
    with pytest.raises(ValueError, match="already registered with this manager"):
        second.register_module("counter", PlainCounter())
    with _manager(redis_url, workers=0) as third:
        with pytest.raises(ValueError, match="already registered in this cluster as support.plain_modules:PlainCounter"):
            third.register_module("counter", OtherCounter())
    task = second.submit_task("counter", "run")
    assert second.get_result(task, timeout=10)["count"] == 1  # the new manager's own object
    assert second.get_system_status()["registered_modules"] == 1
    second.shutdown()


def test_a_worker_builds_an_importable_plain_class(redis_url):
    manager = _manager(redis_url, workers=0)
    manager.register_module("counter", PlainCounter(), config={"start": 10})
    worker = WorkerProcess(redis_url, concurrency=2)
    try:
        task = manager.submit_task("counter", "run", kwargs={"step": 5})
        result = manager.get_result(task, timeout=30)
        assert result == {"count": 15, "pid": worker.pid}
    finally:
        worker.stop()
        manager.shutdown()


def test_a_plain_class_is_built_only_from_an_explicitly_allowed_path(redis_url):
    manager = _manager(redis_url, workers=0)
    manager.register_module("counter", PlainCounter())
    worker = WorkerProcess(redis_url, concurrency=1, env={"PIANO_ALLOWED_MODULES": "*"})
    try:
        task = manager.submit_task("counter", "run")
        why = wait_until(lambda: (manager.get_task_status(task) or {}).get("waiting_because"), timeout=30,
                         message="the worker to set the task aside")
        assert "is not a BaseModule subclass" in why and "PIANO_ALLOWED_MODULES" in why
    finally:
        worker.stop()
        manager.shutdown()


def test_tasks_of_an_unimportable_plain_class_say_why_they_wait(redis_url):
    class Hidden:
        def run(self):
            return 1

    manager = _manager(redis_url, workers=0)
    manager.register_module("hidden", Hidden())
    worker = WorkerProcess(redis_url, concurrency=1)
    try:
        task = manager.submit_task("hidden", "run")
        status = wait_until(lambda: (manager.get_task_status(task) or {}).get("waiting_because"), timeout=30,
                            message="the worker to give the task back")
        assert "cannot load module hidden" in status
        assert manager.get_task_status(task)["status"] == "queued"
    finally:
        worker.stop()
        manager.shutdown()


def test_objects_as_arguments_stay_in_the_submitting_process(redis_url, redis_client):
    """The seed's integration test passes the ResourceCoordinator itself to its tasks."""
    shared = {"n": 0}

    class Counter:
        def increment(self, coordinator, by=1):
            with coordinator.acquire_context("shared", AccessMode.WRITE, "counter") as resource:
                resource["n"] += by
                return resource["n"]

    manager = _manager(redis_url)
    manager.resource_coordinator.register_resource("shared", shared, ResourceType.AGENT_STATE)
    manager.register_module("counter", Counter())
    # An outside worker serves the cluster's queues; the pinned tasks never reach it.
    worker = WorkerProcess(redis_url, concurrency=2)
    try:
        manager.module_executor.pause()
        ids = [manager.submit_task("counter", "increment", args=(manager.resource_coordinator,),
                                   kwargs={"by": 2}) for _ in range(5)]
        stored = redis_client.hget(Keys().rq_job(ids[0]), "piano_payload").decode()
        assert "<in-process ResourceCoordinator>" in stored  # what Redis holds in its place
        manager.module_executor.resume()
        statuses = manager.wait(ids, timeout=30)
        assert shared["n"] == 10
        assert sorted(s["result"] for s in statuses.values()) == [2, 4, 6, 8, 10]
        assert {s["worker"] for s in statuses.values()} == {manager.module_executor.name}
        assert manager.active_tasks == {}
        assert manager.in_process.task_ids() == []  # forgotten once seen ended
    finally:
        worker.stop()
        manager.shutdown()


def test_objects_as_arguments_are_refused_where_they_could_not_run(redis_url, redis_client):
    class Local:
        def run(self, thing):
            return 1

    with _manager(redis_url, workers=0) as looker:
        looker.register_module("local", Local())
        with pytest.raises(SecurityError, match=r"args\[0\] is a object .*max_workers=0"):
            looker.submit_task("local", "run", args=(object(),))
    with _manager(redis_url) as other:
        with pytest.raises(SecurityError, match="'local' is not registered with this manager"):
            other.submit_task("local", "run", args=(object(),))
    assert not redis_client.keys("rq:job:*")


def test_pinned_tasks_left_at_shutdown_are_cancelled(redis_url):
    class Local:
        def run(self, thing):
            return 1

    manager = _manager(redis_url)
    manager.register_module("local", Local())
    manager.module_executor.pause()  # nothing starts: the task stays queued
    task = manager.submit_task("local", "run", args=(object(),))
    assert task in manager.active_tasks
    manager.shutdown(timeout=1)
    status = ConcurrentModuleManager(max_workers=0, redis_url=redis_url).get_task_status(task)
    assert status["status"] == "cancelled" and "in-process arguments ended" in status["error"]
    policies = TaskScheduler(None, redis_url=redis_url).policies
    assert not [o for o in policies.connection.smembers(Keys().sched_part("origins")) if b"local-" in o]


def test_active_tasks_and_history_follow_the_seed(redis_url):
    class Slow:
        def run(self, seconds=0.0):
            import time
            time.sleep(seconds)
            return seconds

    with _manager(redis_url, workers=1) as manager:
        manager.register_module("slow", Slow())
        done = manager.submit_task("slow", "run")
        manager.wait([done], timeout=10)
        blocker = manager.submit_task("slow", "run", kwargs={"seconds": 0.5})
        queued = manager.submit_task("slow", "run")
        active = manager.active_tasks
        assert set(active) == {blocker, queued} and active[queued].module_name == "slow"
        assert manager.cancel_task(queued)
        assert queued not in manager.active_tasks
        manager.wait([blocker], timeout=10)
        assert manager.active_tasks == {}
        history = {t.task_id: t.state for t in manager.task_history}
        assert history == {done: ModuleState.COMPLETED, queued: ModuleState.CANCELLED,
                           blocker: ModuleState.COMPLETED}


def test_execute_task_needs_no_registration_and_returns_a_future(redis_url):
    from concurrent.futures import Future

    from piano_dist import ModuleTask, TaskTimeoutError

    class Plain:
        def run(self, x):
            return x * 2

        def slow(self):
            import time
            time.sleep(1.0)
            return "late"

        def boom(self):
            raise ValueError("broken")

    executor = ModuleExecutor(max_workers=2, max_queue_size=2, redis_url=redis_url)
    try:
        task = ModuleTask("t1", "anything", "run", args=(21,))
        future = executor.execute_task(task, Plain())
        assert isinstance(future, Future) and future.result(timeout=5) == 42
        assert task.state is ModuleState.COMPLETED and task.result == 42
        with pytest.raises(ValueError, match="broken"):
            executor.execute_task(ModuleTask("t2", "anything", "boom"), Plain()).result(timeout=5)
        slow = ModuleTask("t3", "anything", "slow", max_duration=0.1)
        with pytest.raises(TaskTimeoutError, match="t3 exceeded its max_duration"):
            executor.execute_task(slow, Plain()).result(timeout=5)
        with pytest.raises(SecurityError, match="no method 'missing'"):
            executor.execute_task(ModuleTask("t4", "anything", "missing"), Plain())
        with pytest.raises(SecurityError, match="private"):
            executor.execute_task(ModuleTask("t5", "anything", "_hidden"), Plain())
        executor.pause()
        assert executor.is_paused()
        waiting = [executor.execute_task(ModuleTask(f"w{i}", "m", "run", args=(i,)), Plain()) for i in range(2)]
        with pytest.raises(RuntimeError, match="queue is full"):
            executor.execute_task(ModuleTask("w9", "m", "run", args=(9,)), Plain())
        assert executor.cancel_task("w1") and waiting[1].cancelled()
        threading.Timer(0.1, executor.resume).start()
        assert executor.wait_for_completion(timeout=5) == ["w0"]  # what was pending, now ended
        assert waiting[0].result(timeout=0) == 0 and not executor.is_paused()
        metrics = executor.get_metrics()
        assert metrics.tasks_executed >= 3 and metrics.tasks_failed >= 1 and metrics.tasks_timed_out == 1
    finally:
        executor.shutdown(timeout=2)
    with pytest.raises(RuntimeError, match="shut down"):
        executor.execute_task(ModuleTask("t6", "anything", "run", args=(1,)), Plain())



def test_a_backlog_with_no_worker_refreshes_its_bookkeeping_amortised(redis_url, monkeypatch):
    """active_tasks' bookkeeping is refreshed from Redis on submit once it is crowded; while
    nothing ends, each refresh must wait for the tracked set to double, or every later
    submit re-reads every queued task (quadratic: 5,000-task batches fell from ~35k to
    ~5k tasks/s once 10,000 were queued)."""
    import piano_dist.manager as manager_module

    monkeypatch.setattr(manager_module, "_REFRESH_AT", 20)
    with _manager(redis_url, workers=0, max_queue_size=0) as manager:
        manager.register_module("counter", PlainCounter())
        refreshes = []
        real = manager.client.get_statuses
        monkeypatch.setattr(manager.client, "get_statuses", lambda ids: refreshes.append(len(ids)) or real(ids))
        for _ in range(30):
            manager.submit_many([{"module_name": "counter", "method_name": "run"} for _ in range(10)])
        assert refreshes == [20, 40, 80, 160]  # doubling: 4 refreshes for 300 queued tasks, not 29
        assert len(manager.active_tasks) == 300
