"""Hand-off latency: time from release() in one process to the waiter's grant in another.

    python benchmarks/resources_handoff.py [--rounds 300]

Starts a private redis-server (never the machine's 6379). Not a test: prints figures.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.redis_server import RedisServer  # noqa: E402

from piano_dist.resources import AccessMode, ResourceCoordinator, ResourceType  # noqa: E402


def waiter(url, rounds, ready, out):
    conn = redis.Redis.from_url(url)
    coord = ResourceCoordinator(4, 10.0, connection=conn, lease=5.0)
    for _ in range(rounds):
        ready.wait()
        lock_id = coord.acquire_resource("res", AccessMode.WRITE, "waiter", timeout=10)
        granted = time.time()
        coord.release_resource(lock_id)
        out.put(granted)
    coord.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=300)
    rounds = parser.parse_args().rounds
    with RedisServer() as server:
        conn = redis.Redis.from_url(server.url)
        coord = ResourceCoordinator(4, 10.0, connection=conn, lease=5.0)
        coord.register_resource("res", None, ResourceType.COMPUTATION)
        ctx = mp.get_context("fork")
        ready, out = ctx.Event(), ctx.Queue()
        proc = ctx.Process(target=waiter, args=(server.url, rounds, ready, out))
        proc.start()
        waits = []
        status = coord.get_resource_status
        for _ in range(rounds):
            lock_id = coord.acquire_resource("res", AccessMode.WRITE, "holder", timeout=10)
            ready.set()
            while status("res")["waiting_requests"] == 0:  # the waiter must be queued, blocked
                time.sleep(0.0005)
            ready.clear()
            released = time.time()
            coord.release_resource(lock_id)
            waits.append(out.get(timeout=10) - released)
        proc.join()
        coord.shutdown()
    waits_ms = sorted(w * 1000 for w in waits)
    print(f"hand-off release -> next holder, {rounds} rounds, 2 processes:")
    print(f"  median {statistics.median(waits_ms):.3f} ms  p90 {waits_ms[int(0.9 * len(waits_ms))]:.3f} ms"
          f"  max {waits_ms[-1]:.3f} ms")


if __name__ == "__main__":
    main()
