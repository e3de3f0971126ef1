"""RQ's own CLI sees and drives piano-dist: `rq info` lists its queues and workers,
`rq worker -w piano_dist.workers.PianoWorker` runs its tasks."""
from __future__ import annotations

import subprocess
import sys

from support.foundation import wait_for_workers
from support.sample_modules import Echo
from support.waiting import wait_until
from support.workers import WorkerProcess, worker_env

from piano_dist import ConcurrentModuleManager

QUEUES = ["piano.critical", "piano.high", "piano.normal", "piano.low", "piano.background"]


def _rq(*args: str) -> list[str]:
    # RQ's console script, run through its module so the test's interpreter is used.
    return [sys.executable, "-c", "import sys; from rq.cli import main; sys.exit(main())", *args]


def test_rq_info_lists_piano_queues_and_worker(redis_url, redis_client):
    worker = WorkerProcess(redis_url, concurrency=2, name="seen-by-rq")
    try:
        wait_for_workers(redis_client, ["seen-by-rq"], procs=[worker])
        out = subprocess.run(_rq("info", "--url", redis_url), capture_output=True,
                             text=True, timeout=30, env=worker_env(redis_url))
    finally:
        worker.stop()
    assert out.returncode == 0, out.stderr
    for queue in QUEUES:
        assert queue in out.stdout.split("seen-by-rq")[0], f"`rq info` does not list {queue}:\n{out.stdout}"
    assert "seen-by-rq" in out.stdout
    assert "5 queues" in out.stdout, out.stdout


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
