"""Fault injection (issue 12, "done when"): a 2,000-task DAG runs while workers are
SIGKILLed at random, Redis is killed and restarted from its append-only file, and a
script keeps Redis BUSY. At the end every task is in exactly the status its graph
implies, none is lost, and none was recorded as completed twice."""
from __future__ import annotations

import random
import signal
import threading
import time

import pytest
import redis
from support.failure_modules import DagNode
from support.redis_server import RedisServer
from support.waiting import wait_until
from support.workers import WorkerProcess

from piano_dist import ConcurrentModuleManager, TaskSpec

N = 2000
TERMINAL = {"completed", "failed", "dependency_failed", "cancelled", "timed_out"}


def _graph(seed: int = 12):
    """Task specs in submission order and the status each must end in."""
    rng = random.Random(seed)
    specs, expected = [], {}
    for i in range(N):
        tid = f"dag{i:04d}"
        parents = [f"dag{p:04d}" for p in rng.sample(range(max(0, i - 150), i), min(i, rng.choice((0, 1, 1, 2, 3))))]
        tolerated = [p for p in parents if rng.random() < 0.2]
        fails = rng.random() < 0.03
        blocked = any(expected[p] != "completed" for p in parents if p not in tolerated)
        expected[tid] = "dependency_failed" if blocked else ("failed" if fails else "completed")
        specs.append(TaskSpec("dag", "fail" if fails else "nap", args=(tid,),
                              kwargs={} if fails else {"seconds": rng.uniform(0.05, 0.3)},
                              dependencies=parents or None, allow_failure=tolerated or None,
                              task_id=tid, max_attempts=20))
    return specs, expected


class Faults:
    """Kills and restarts workers at random, restarts Redis, runs a BUSY script."""

    def __init__(self, server: RedisServer, workers: list, env: dict):
        self.server, self.workers, self.env = server, workers, env
        self.log: list[str] = []
        self.rng = random.Random(7)

    def kill_a_worker(self) -> None:
        victim = self.rng.choice(self.workers)
        victim.signal(signal.SIGKILL)
        victim.wait(timeout=10)
        self.workers.remove(victim)
        fresh = WorkerProcess(self.server.url, concurrency=8, name=f"dag-{len(self.log)}", env=self.env)
        self.workers.append(fresh)
        # The next fault hits it running (tests/test_fault_paths.py covers a start while BUSY).
        admin = redis.Redis(port=self.server.port)
        wait_until(lambda: admin.exists(f"rq:worker:{fresh.name}"), timeout=30, message="the new worker to start")
        self.log.append(f"killed {victim.name}")

    def restart_redis(self) -> None:
        self.server.kill()  # SIGKILL: only what the AOF already holds survives
        time.sleep(1.0)  # the outage
        self.server.start()
        self.log.append("restarted redis")

    def busy_script(self, seconds: float = 2.0) -> None:
        admin = redis.Redis(port=self.server.port)
        admin.config_set("lua-time-limit", 100)  # BUSY replies after 0.1 s of script
        spinner = redis.Redis(port=self.server.port, socket_timeout=30)

        def spin():
            try:
                spinner.eval("local i = 0 while true do i = i + 1 end", 0)
            except redis.RedisError:
                pass  # killed below

        thread = threading.Thread(target=spin, daemon=True)
        thread.start()
        time.sleep(seconds)  # Redis answers BUSY to everyone meanwhile
        wait_until(lambda: _script_kill(admin), timeout=10, message="SCRIPT KILL")
        thread.join(timeout=10)
        self.log.append("busy script")


def _script_kill(admin) -> bool:
    try:
        admin.script_kill()
        return True
    except redis.ResponseError as exc:
        return "NOTBUSY" in str(exc)


def _statuses(client, ids) -> dict:
    with client.pipeline(transaction=False) as pipe:
        for tid in ids:
            pipe.hget(f"rq:job:{tid}", "piano_status")
        return {tid: (v.decode() if v else None) for tid, v in zip(ids, pipe.execute())}


@pytest.mark.slow
def test_a_dag_survives_worker_kills_a_redis_restart_and_a_busy_script():
    server = RedisServer(appendonly=True).start()
    env = {"PIANO_RESULT_TTL": "3600"}
    specs, expected = _graph()
    ids = list(expected)
    manager = ConcurrentModuleManager(max_workers=0, max_queue_size=0, redis_url=server.url)
    workers = [WorkerProcess(server.url, concurrency=8, name=f"dag-w{i}", env=env) for i in range(3)]
    faults = Faults(server, workers, env)
    client = redis.Redis(port=server.port)
    try:
        manager.register_module("dag", DagNode())
        manager.submit_many(specs)
        done = lambda: sum(s in TERMINAL for s in _statuses(client, ids).values())  # noqa: E731
        wait_until(lambda: done() >= 100, timeout=60, message="the run to get going")
        faults.kill_a_worker()
        wait_until(lambda: done() >= 300, timeout=60, message="progress after a worker kill")
        faults.restart_redis()
        wait_until(lambda: done() >= 600, timeout=90, message="progress after the Redis restart")
        faults.kill_a_worker()
        faults.busy_script()
        wait_until(lambda: done() >= 900, timeout=90, message="progress after the BUSY script")
        faults.kill_a_worker()
        wait_until(lambda: done() == N, timeout=240, interval=0.5, message="every task to end")

        final = _statuses(client, ids)
        wrong = {tid: (final[tid], expected[tid]) for tid in ids if final[tid] != expected[tid]}
        assert not wrong, f"{len(wrong)} tasks ended otherwise than their graph implies: {list(wrong.items())[:10]}"
        completed = sum(1 for s in expected.values() if s == "completed")
        assert int(client.hget("piano:stats", "completed")) == completed, "a completion was recorded twice"
        with client.pipeline(transaction=False) as pipe:
            for tid in ids:
                if expected[tid] == "completed":
                    pipe.xlen(f"rq:results:{tid}")
            assert set(pipe.execute()) == {1}, "a task's outcome was recorded more than once"
        dead = {w.name: w.stderr_text()[-3000:] for w in faults.workers if not w.alive()}
        assert not dead, f"workers exited on a fault: {dead}"
        assert len(faults.log) == 5, faults.log
    finally:
        for w in faults.workers:
            w.stop()
        manager.shutdown()
        client.close()
        server.stop()
