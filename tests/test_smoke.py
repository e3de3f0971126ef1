from support.sample_modules import Echo
from support.waiting import wait_until
from support.workers import WorkerProcess

from piano_dist import ConcurrentModuleManager, Priority


def test_task_runs_on_a_worker_process(redis_url):
    manager = ConcurrentModuleManager(max_workers=0, redis_url=redis_url)
    manager.register_module("echo", Echo())
    worker = WorkerProcess(redis_url, concurrency=2)
    try:
        task_id = manager.submit_task("echo", "add", args=(2, 3), priority=Priority.HIGH)
        assert manager.get_result(task_id, timeout=20) == 5
        status = manager.get_task_status(task_id)
        assert status["status"] == "completed" and status["worker"]
    finally:
        worker.stop()
        manager.shutdown()
