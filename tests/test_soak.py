"""Soak (issue 12.11): after 20,000 tasks and their result TTL, Redis holds what it held
before them. Anything kept per task beyond the TTL (a registry entry, a stream, a graph
key, an index) would show here as memory that does not come back."""
from __future__ import annotations

import pytest
from support.redis_server import RedisServer
from support.sample_modules import Echo
from support.waiting import wait_until
from support.workers import WorkerProcess

from piano_dist import ConcurrentModuleManager
from piano_dist.config import Timing

TTL = 3


def _completed(client) -> int:
    return int(client.hget("piano:stats", "completed") or 0)


def _run(manager, client, n: int) -> None:
    target = _completed(client) + n
    for start in range(0, n, 2000):
        manager.submit_many([{"module_name": "echo", "method_name": "add", "args": (i, 1)}
                             for i in range(start, min(n, start + 2000))])
    wait_until(lambda: _completed(client) >= target, timeout=300, interval=0.2, message=f"{n} tasks to complete")


def _records_gone(client) -> bool:
    """True once no task record or result stream is left (they expire by TTL)."""
    return not (client.scan(0, match="rq:job:*", count=100_000)[1]
                or client.scan(0, match="rq:results:*", count=100_000)[1])


def _used(client) -> int:
    return client.info("memory")["used_memory"]


@pytest.mark.slow
def test_memory_returns_to_its_baseline_after_20000_tasks_and_the_result_ttl():
    server = RedisServer().start()  # its own server, so the baseline is this test's alone
    env = {"PIANO_RESULT_TTL": str(TTL)}
    client = server.client()
    manager = ConcurrentModuleManager(max_workers=0, max_queue_size=0, redis_url=server.url,
                                      timing=Timing(result_ttl=TTL))
    workers = [WorkerProcess(server.url, concurrency=16, name=f"soak-{i}", env=env) for i in range(2)]
    try:
        manager.register_module("echo", Echo())
        _run(manager, client, 1000)  # warm up: scripts loaded, connections open, counters exist
        wait_until(lambda: _records_gone(client), timeout=60, interval=0.5, message="the warm-up to expire")
        wait_until(lambda: not client.llen("piano:wakeup"), timeout=30, message="idle workers")
        baseline = _used(client)

        _run(manager, client, 20_000)
        peak = _used(client)
        assert peak > baseline + 20_000 * 500  # the run itself did hold its tasks
        wait_until(lambda: _records_gone(client), timeout=120, interval=0.5,
                   message="20,000 task records to expire")
        # What is left per task besides its record (registry entries…) goes with the sweep.
        try:
            wait_until(lambda: _used(client) <= baseline * 1.10, timeout=30, interval=0.5,
                       message="Redis memory to return within 10 % of its baseline")
        finally:
            after = _used(client)
            print(f"used_memory: baseline {baseline}, after the run {peak}, after the TTL {after} "
                  f"({after / baseline:.3f} of baseline)")
    finally:
        for w in workers:
            w.stop()
        manager.shutdown()
        client.close()
        server.close()
