"""RQ's own CLI sees and drives piano-dist: `rq info` lists its queues and workers,
`rq worker -w piano_dist.workers.PianoWorker` runs its tasks."""
from __future__ import annotations

import subprocess
import sys

from support.foundation import wait_for_workers
from support.sample_modules import Echo, Failer
from support.waiting import wait_until
from support.workers import WorkerProcess, worker_env

from piano_dist import ConcurrentModuleManager

QUEUES = ["piano.critical", "piano.high", "piano.normal", "piano.low", "piano.background"]


def _rq(*args: str) -> list[str]:
    # RQ's console script, run through its module so the test's interpreter is used.
    return [sys.executable, "-c", "import sys; from rq.cli import main; sys.exit(main())", *args]


def _rq_info(redis_url: str) -> str:
    out = subprocess.run(_rq("info", "--url", redis_url), capture_output=True, text=True, timeout=30,
                         env=worker_env(redis_url))
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_rq_info_lists_piano_queues_and_worker(redis_url, redis_client):
    worker = WorkerProcess(redis_url, concurrency=2, name="seen-by-rq")
    manager = ConcurrentModuleManager(max_workers=0, redis_url=redis_url)
    try:
        wait_for_workers(redis_client, ["seen-by-rq"], procs=[worker])
        # Before any task was queued, the queues are listed already.
        before = _rq_info(redis_url)
        manager.register_module("echo", Echo())
        manager.register_module("failer", Failer())
        manager.get_result(manager.submit_task("echo", "add", args=(1, 2)), timeout=20)
        failed = manager.submit_task("failer")
        manager.wait(failed, timeout=20)
        after = _rq_info(redis_url)
    finally:
        worker.stop()
        manager.shutdown()
    queue_part = before.split("seen-by-rq")[0]
    for queue in QUEUES:
        assert queue in queue_part, f"`rq info` does not list {queue}:\n{before}"
    assert "5 queues" in before, before
    worker_line = next(line for line in after.splitlines() if line.startswith("seen-by-rq"))
    assert all(q in worker_line for q in QUEUES), worker_line
    # RQ's view of the worker's work matches what it did.
    assert "jobs: 1 finished, 1 failed" in worker_line, worker_line
    assert "piano.normal | 0, 0 executing, 1 finished, 1 failed" in after, after


def test_rq_worker_cli_with_piano_worker_class_runs_a_task(redis_url, redis_client):
    manager = ConcurrentModuleManager(max_workers=0)
    manager.register_module("echo", Echo())
    proc = subprocess.Popen(
        _rq("worker", "-w", "piano_dist.workers.PianoWorker", "piano.normal", "--url", redis_url,
            "--name", "plain-rq-cli"),
        env=worker_env(redis_url), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: redis_client.exists("rq:worker:plain-rq-cli"), timeout=20,
                   message="`rq worker` to register")
        task_id = manager.submit_task("echo", "add", args=(3, 4))
        assert manager.get_result(task_id, timeout=20) == 7
        assert manager.get_task_status(task_id)["worker"] == "plain-rq-cli"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        manager.shutdown()
    assert proc.returncode is not None
