"""Pause/resume, cross-process event callbacks, cancellation, waiting — against real workers."""
from __future__ import annotations

import threading
import time

import pytest

from support.foundation import records, wait_for_workers
from support.sample_modules import Echo, Failer, Recorder, Sleeper
from support.waiting import wait_until
from support.workers import WorkerProcess

from piano_dist import (ConcurrentModuleManager, Priority, TaskFailedError, TaskTimeoutError)


@pytest.fixture
def manager(redis_url):
    m = ConcurrentModuleManager(max_workers=0, redis_url=redis_url)
    m.register_module("rec", Recorder())
    m.register_module("echo", Echo())
    yield m
    m.shutdown()


@pytest.fixture
def worker(redis_url, redis_client):
    w = WorkerProcess(redis_url, concurrency=1, name="ctl-worker")
    try:
        wait_for_workers(redis_client, ["ctl-worker"], procs=[w])
        yield w
    finally:
        w.stop()


def test_paused_module_waits_then_runs_in_priority_order(manager, worker, redis_client):
    manager.pause_module("rec")
    order = [Priority.BACKGROUND, Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.CRITICAL]
    ids = {p: manager.submit_task("rec", kwargs={"label": p.name.lower()}, priority=p) for p in order}
    # The worker is alive: another module's task, queued behind all of them, completes.
    probe = manager.submit_task("echo", "add", args=(1, 2), priority=Priority.BACKGROUND)
    assert manager.get_result(probe, timeout=20) == 3
    assert records(redis_client) == []
    for p, tid in ids.items():
        status = manager.get_task_status(tid)
        assert status["status"] == "queued", status
        assert "paused" in status.get("waiting_because", ""), status
    system = manager.get_system_status()
    assert system["paused_modules"] == ["rec"]
    # Held for the paused module, they still count as queued, each at its priority.
    assert system["queued_tasks"] == 5
    assert system["queued_by_priority"] == {p.name.lower(): 1 for p in order}

    manager.resume_module("rec")
    statuses = manager.wait(list(ids.values()), timeout=20)
    assert all(s["status"] == "completed" for s in statuses.values())
    assert all("waiting_because" not in s for s in statuses.values())
    assert [r["label"] for r in records(redis_client)] == ["critical", "high", "normal", "low", "background"]
    assert manager.get_system_status()["paused_modules"] == []


def test_event_callbacks_fire_for_a_task_run_in_a_worker_process(manager, worker):
    seen: dict[str, list] = {"module_started": [], "module_completed": [], "task_completed": [],
                             "module_error": []}
    for name, bucket in seen.items():
        manager.add_event_callback(name, lambda *a, _b=bucket: _b.append(a))
    finals = []
    task_id = manager.submit_task("echo", "add", args=(5, 6), callback=finals.append)
    assert manager.get_result(task_id, timeout=20) == 11
    wait_until(lambda: finals and seen["task_completed"] and seen["module_completed"], timeout=10,
               message="the callbacks")
    assert (task_id, "echo") in seen["module_started"]
    assert (task_id, "echo") in seen["module_completed"]
    assert (task_id, True) in seen["task_completed"]

    # A failing task fires module_error and task_completed(success=False).
    manager.register_module("failer", Failer())
    failed_finals = []
    bad = manager.submit_task("failer", kwargs={"message": "nope"}, callback=failed_finals.append)
    with pytest.raises(TaskFailedError):
        manager.get_result(bad, timeout=20)
    wait_until(lambda: (bad, False) in seen["task_completed"] and failed_finals, timeout=10,
               message="the failure callbacks")
    assert any(a[0] == bad and "nope" in (a[2] or "") for a in seen["module_error"])

    # Events of one listener arrive in order: once a later task's completion is seen,
    # any duplicate of the first task's callback would have been delivered already.
    later = manager.submit_task("echo", "add", args=(0, 0))
    manager.get_result(later, timeout=20)
    wait_until(lambda: (later, True) in seen["task_completed"], timeout=10, message="the later event")
    assert len(finals) == 1
    assert finals[0]["task_id"] == task_id and finals[0]["status"] == "completed" and finals[0]["result"] == 11
    assert len(failed_finals) == 1 and failed_finals[0]["status"] == "failed"
    assert sum(1 for a in seen["task_completed"] if a[0] == task_id) == 1


def test_cancel_queued_task_never_runs(manager, redis_url, redis_client):
    victim = manager.submit_task("rec", kwargs={"label": "victim"})
    keeper = manager.submit_task("rec", kwargs={"label": "keeper"})
    assert manager.cancel_task(victim) is True
    assert manager.get_task_status(victim)["status"] == "cancelled"
    assert manager.cancel_task(victim) is False  # already ended
    assert manager.cancel_task("rec_run_0123456789abcdef") is False  # unknown
    assert manager.cancel_task("not a valid id!") is False
    w = WorkerProcess(redis_url, concurrency=2)
    try:
        assert manager.get_result(keeper, timeout=20) == "keeper"
        assert manager.cancel_task(keeper) is False  # finished
    finally:
        w.stop()
    assert [r["label"] for r in records(redis_client)] == ["keeper"]
    assert manager.get_task_status(victim)["status"] == "cancelled"
    with pytest.raises(TaskFailedError) as info:
        manager.get_result(victim, timeout=5)
    assert info.value.status == "cancelled"


def test_wait_and_get_result_block_until_the_end(manager, redis_url):
    manager.register_module("sleeper", Sleeper())
    manager.register_module("failer", Failer())
    task_id = manager.submit_task("sleeper", kwargs={"seconds": 0.5})
    # No worker yet: waiting gives up with TaskTimeoutError naming the task.
    with pytest.raises(TaskTimeoutError) as info:
        manager.get_result(task_id, timeout=0.3)
    assert task_id in str(info.value)
    assert manager.get_task_status(task_id)["status"] == "queued"

    result: dict = {}

    def block():
        result["value"] = manager.get_result(task_id, timeout=30)
        result["status"] = manager.get_task_status(task_id)["status"]

    waiter = threading.Thread(target=block)
    waiter.start()
    w = WorkerProcess(redis_url, concurrency=2)
    try:
        waiter.join(timeout=30)
        assert not waiter.is_alive()
        assert result == {"value": 0.5, "status": "completed"}
        statuses = manager.wait([task_id], timeout=5)
        assert statuses[task_id]["status"] == "completed"

        bad = manager.submit_task("failer", kwargs={"message": "kaput"})
        with pytest.raises(TaskFailedError) as failed:
            manager.get_result(bad, timeout=20)
        assert failed.value.status == "failed" and "kaput" in str(failed.value)
        assert manager.wait(bad, timeout=5)[bad]["status"] == "failed"
    finally:
        w.stop()
