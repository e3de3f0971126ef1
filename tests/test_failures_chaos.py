"""Chaos: workers SIGKILLed at random mid-run, and Redis itself killed and restarted.
Every task still ends completed, exactly once, and nothing finished is lost."""
import random

import pytest
from support.failure_modules import DagNode, RunLog, parse_run
from support.failure_procs import Workers
from support.redis_server import RedisServer
from support.waiting import wait_until

from piano_dist import ConcurrentModuleManager, TaskSpec

pytestmark = pytest.mark.slow


@pytest.mark.slow
def test_workers_killed_at_random_lose_nothing_and_rerun_only_what_they_held(redis_url, redis_client):
    rng = random.Random(7)
    n = 500
    manager = ConcurrentModuleManager(max_workers=0, redis_url=redis_url, max_queue_size=0)
    manager.register_module("log", RunLog())
    killed_pids, killed_names = set(), set()
    try:
        with Workers(redis_url) as workers:
            pool = [workers.start(concurrency=2, log_level="WARNING") for _ in range(3)]
            ids = manager.submit_many([
                TaskSpec("log", "run", args=(f"t{i:03d}",), kwargs={"sleep": rng.uniform(0.02, 0.05)},
                         task_id=f"t{i:03d}") for i in range(n)])
            for threshold in (40, 130, 220, 310):
                wait_until(lambda: redis_client.llen("test:runs") >= threshold, timeout=60,
                           message=f"{threshold} runs started")
                # Prefer a worker that is running something right now.
                busy = {v.decode() for v in (redis_client.hget(f"rq:job:{tid.decode()}", "worker_name")
                                             for tid in redis_client.zrange("piano:running", 0, -1)) if v}
                candidates = [w for w in pool if w.name in busy and w.alive()] or [w for w in pool if w.alive()]
                victim = rng.choice(candidates)
                victim.kill()
                killed_pids.add(victim.pid)
                killed_names.add(victim.name)
                pool[pool.index(victim)] = workers.start(concurrency=2, log_level="WARNING")
            statuses = manager.wait(ids, timeout=90)
    finally:
        manager.shutdown()

    assert {st["status"] for st in statuses.values()} == {"completed"}
    runs: dict[str, list] = {}
    for entry in redis_client.lrange("test:runs", 0, -1):
        r = parse_run(entry)
        runs.setdefault(r["label"], []).append(r)
    assert set(runs) == set(ids)

    counts = {k.decode(): int(v) for k, v in redis_client.hgetall("piano:stats").items()}
    assert counts["completed"] == n and counts.get("backlog", 0) == 0
    assert redis_client.zcard("piano:running") == 0

    rerun = 0
    for tid in ids:
        st, task_runs = statuses[tid], runs[tid]
        # Completion recorded once: one RQ result entry, one completed count (above).
        assert redis_client.xlen(f"rq:results:{tid}") == 1, tid
        assert st["result"] == tid
        # Every claim counts an attempt; a run's start is recorded after its claim.
        assert st["attempts"] >= len(task_runs), (tid, st, task_runs)
        assert [r["attempt"] for r in task_runs] == sorted(r["attempt"] for r in task_runs)
        assert task_runs[-1]["worker"] == st["worker"] and task_runs[-1]["attempt"] == st["attempts"]
        if st["attempts"] > 1:
            assert any(name in st["last_loss"] for name in killed_names), (tid, st)
        if len(task_runs) > 1:
            rerun += 1
            # Each earlier run was on a worker that was killed while running it.
            assert all(r["pid"] in killed_pids for r in task_runs[:-1]), (tid, task_runs, killed_pids)
    assert rerun >= 1, "no kill hit a running task: the test did not exercise recovery"


@pytest.mark.slow
def test_redis_killed_and_restarted_mid_run(monkeypatch):
    server = RedisServer(appendonly=True).start()
    monkeypatch.setenv("PIANO_REDIS_URL", server.url)
    client = server.client()
    n = 120
    try:
        manager = ConcurrentModuleManager(max_workers=0, redis_url=server.url, max_queue_size=0)
        manager.register_module("dag", DagNode())
        try:
            with Workers(server.url) as workers:
                for _ in range(2):
                    workers.start(concurrency=2, log_level="WARNING")
                ids = manager.submit_many([TaskSpec("dag", "nap", args=(f"n{i:03d}", 0.1), task_id=f"n{i:03d}")
                                           for i in range(n)])

                def completed_ids():
                    return [t for t, st in manager.client.get_statuses(ids).items() if st["status"] == "completed"]

                wait_until(lambda: len(completed_ids()) >= 20, timeout=30, message="20 tasks completed")
                before = completed_ids()
                assert len(before) < n, "everything finished before the outage: the test proves nothing"
                server.kill()
                server.start()
                statuses = manager.wait(ids, timeout=90)
                assert all(w.alive() for w in workers.started), "a worker died with Redis"
        finally:
            manager.shutdown()
        assert {st["status"] for st in statuses.values()} == {"completed"}
        assert all(statuses[t]["status"] == "completed" and statuses[t]["result"] == t for t in before)
        counts = {k.decode(): int(v) for k, v in client.hgetall("piano:stats").items()}
        assert counts["completed"] == n and counts["backlog"] == 0
        assert client.zcard("piano:running") == 0
    finally:
        client.close()
        server.stop()
