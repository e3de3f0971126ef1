"""Tasks across real processes: priority order, shared queues, N slots, unloadable modules."""
from __future__ import annotations

import json
import sys
import types

import pytest

from support.foundation import records, run_cli, run_python, wait_for_workers
from support.sample_modules import Echo, Recorder
from support.waiting import wait_until
from support.workers import WorkerProcess

from piano_dist import BaseModule, ConcurrentModuleManager, Priority


@pytest.fixture
def manager(redis_url):
    m = ConcurrentModuleManager(max_workers=0, redis_url=redis_url)
    yield m
    m.shutdown()


def test_critical_task_overtakes_a_normal_backlog_on_one_slot(manager, redis_client, redis_url):
    manager.register_module("rec", Recorder())
    normal = [manager.submit_task("rec", kwargs={"label": f"normal-{i}"}, priority=Priority.NORMAL)
              for i in range(6)]
    low = manager.submit_task("rec", kwargs={"label": "low"}, priority=Priority.LOW)
    background = manager.submit_task("rec", kwargs={"label": "background"}, priority=Priority.BACKGROUND)
    high = manager.submit_task("rec", kwargs={"label": "high"}, priority=Priority.HIGH)
    critical = manager.submit_task("rec", kwargs={"label": "critical"}, priority=Priority.CRITICAL)
    assert manager.get_system_status()["queued_by_priority"]["normal"] == 6
    worker = WorkerProcess(redis_url, concurrency=1)
    try:
        manager.wait(normal + [low, background, high, critical], timeout=30)
    finally:
        worker.stop()
    labels = [r["label"] for r in records(redis_client)]
    assert labels == ["critical", "high"] + [f"normal-{i}" for i in range(6)] + ["low", "background"]
    assert len({r["worker"] for r in records(redis_client)}) == 1


def test_submit_run_and_read_in_three_processes(redis_url):
    submitter = run_python('''
        from piano_dist import ConcurrentModuleManager
        from support.sample_modules import Echo
        m = ConcurrentModuleManager(max_workers=0)
        m.register_module("echo", Echo())
        print(m.submit_task("echo", "add", args=(20, 22)))
        m.shutdown()
    ''', redis_url)
    assert submitter.returncode == 0, submitter.stderr
    task_id = submitter.stdout.strip()
    worker = WorkerProcess(redis_url, concurrency=2)
    try:
        reader = run_python(f'''
            import json
            from piano_dist import ConcurrentModuleManager
            m = ConcurrentModuleManager(max_workers=0)
            print(json.dumps({{"result": m.get_result({task_id!r}, timeout=30),
                              "status": m.get_task_status({task_id!r})}}))
            m.shutdown()
        ''', redis_url)
    finally:
        worker.stop()
    assert reader.returncode == 0, reader.stderr
    seen = json.loads(reader.stdout)
    assert seen["result"] == 42
    assert seen["status"]["status"] == "completed"
    assert str(worker.pid) in seen["status"]["worker"]  # default names are host.pid.worker-x
    # The CLI, a fourth process, reads the same status.
    cli = run_cli(["status", task_id, "--json"], redis_url)
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["result"] == 42


def test_two_worker_processes_share_the_queues(manager, redis_client, redis_url):
    manager.register_module("rec", Recorder())
    workers = [WorkerProcess(redis_url, concurrency=2, name=f"share-{i}") for i in range(2)]
    try:
        wait_for_workers(redis_client, ["share-0", "share-1"], procs=workers)
        ids = [manager.submit_task("rec", kwargs={"label": f"t{i}", "sleep": 0.3}) for i in range(8)]
        manager.wait(ids, timeout=30)
    finally:
        for w in workers:
            w.stop()
    recs = records(redis_client)
    assert len(recs) == 8
    assert {r["worker"] for r in recs} == {"share-0", "share-1"}
    assert {r["pid"] for r in recs} == {w.pid for w in workers}


def test_sixteen_slots_run_sixteen_tasks_at_once(manager, redis_client, redis_url):
    manager.register_module("rec", Recorder())
    ids = [manager.submit_task("rec", kwargs={"label": f"s{i}", "sleep": 0.5}) for i in range(16)]
    worker = WorkerProcess(redis_url, concurrency=16)
    try:
        statuses = manager.wait(ids, timeout=30)
    finally:
        worker.stop()
    assert all(s["status"] == "completed" for s in statuses.values())
    starts = sorted(r["started"] for r in records(redis_client))
    ends = sorted(s["ended_at"] for s in statuses.values())
    assert len(starts) == 16
    # Overlap, not speed: count how many ran at the same moment.
    events = sorted([(t, 1) for t in starts] + [(t, -1) for t in ends], key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak >= 8, f"at most {peak} of 16 tasks ran at once"
    assert len({s["worker"] for s in statuses.values()}) == 1


# A module class that exists in this process only: its import path names a module that
# no worker process has on its PYTHONPATH.
_local_only = types.ModuleType("piano_foundation_local_only")


class LocalOnly(BaseModule):
    def run(self, x=1):
        return {"ran_in": "manager", "x": x}


LocalOnly.__module__ = _local_only.__name__
_local_only.LocalOnly = LocalOnly


def test_worker_that_cannot_import_a_module_leaves_its_task_queued(redis_url, redis_client, monkeypatch):
    monkeypatch.setitem(sys.modules, _local_only.__name__, _local_only)
    submitter = ConcurrentModuleManager(max_workers=0, redis_url=redis_url)
    submitter.register_module("local", LocalOnly())
    submitter.register_module("echo", Echo())
    worker = WorkerProcess(redis_url, concurrency=2, name="no-local")
    runner = None
    try:
        task_id = submitter.submit_task("local", kwargs={"x": 7})
        status = wait_until(lambda: (s := submitter.get_task_status(task_id)) and "waiting_because" in s and s,
                            timeout=20, message="the worker to give the task back")
        assert status["status"] == "queued"
        assert "cannot load" in status["waiting_because"] and "no-local" in status["waiting_because"]
        # The worker is alive and keeps serving other modules; the task stays queued.
        echo_id = submitter.submit_task("echo", "add", args=(1, 1))
        assert submitter.get_result(echo_id, timeout=20) == 2
        status = submitter.get_task_status(task_id)
        assert status["status"] == "queued" and "cannot load" in status["waiting_because"]
        assert status["attempts"] == 0
        # A manager that holds the instance runs it in its own slots.
        runner = ConcurrentModuleManager(max_workers=1, redis_url=redis_url)
        runner.register_module("local", LocalOnly())
        assert runner.get_result(task_id, timeout=20) == {"ran_in": "manager", "x": 7}
        assert runner.get_task_status(task_id)["worker"] == runner.module_executor.name
    finally:
        worker.stop()
        if runner is not None:
            runner.shutdown()
        submitter.shutdown()
