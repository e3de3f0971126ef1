"""W5 locks: WRITE acquire+release pairs/s from one client, uncontended; hand-off latency
(release by one holder -> grant to the next, another process) with 8 contending
processes; python-redis-lock measured the same way. Also the one-waiter hand-off of
benchmarks/resources_handoff.py (a holder releases while exactly one waiter is blocked).
"""
from __future__ import annotations

import multiprocessing as mp
import time

import redis

from .common import median, pct

KEY = "w5"
RESOURCE = "bench-res"


def _piano_lock(conn):
    from piano_dist.resources import AccessMode, ResourceCoordinator

    coord = ResourceCoordinator(16, 30.0, connection=conn, lease=10.0)

    def acquire():
        return coord.acquire_resource(RESOURCE, AccessMode.WRITE, "bench", timeout=30)

    return coord, acquire, coord.release_resource


def _prl_lock(conn):
    import redis_lock

    lock = redis_lock.Lock(conn, RESOURCE, expire=30)

    def acquire():
        lock.acquire(blocking=True, timeout=30)
        return lock

    return None, acquire, lambda held: held.release()


def _make(kind, conn):
    return _piano_lock(conn) if kind == "piano" else _prl_lock(conn)


def register(url: str) -> None:
    from piano_dist.resources import ResourceCoordinator, ResourceType

    coord = ResourceCoordinator(4, 10.0, connection=redis.Redis.from_url(url))
    if RESOURCE not in coord.registered_resources():
        coord.register_resource(RESOURCE, None, ResourceType.COMPUTATION)
    coord.shutdown()


def pairs_per_s(url: str, kind: str, n: int) -> float:
    coord, acquire, release = _make(kind, redis.Redis.from_url(url))
    for _ in range(20):  # warm: scripts loaded, connections open
        release(acquire())
    t0 = time.perf_counter()
    for _ in range(n):
        release(acquire())
    elapsed = time.perf_counter() - t0
    if coord is not None:
        coord.shutdown()
    return n / elapsed


def _contender(url, kind, rounds, start, out):
    coord, acquire, release = _make(kind, redis.Redis.from_url(url))
    me = mp.current_process().pid
    spans = []
    start.wait()  # a Barrier: every contender ready, and the parent
    for _ in range(rounds):
        held = acquire()
        granted = time.time()
        released = time.time()
        release(held)
        spans.append((granted, released, me))
    if coord is not None:
        coord.shutdown()
    out.put(spans)


def _get(out, procs, timeout: float = 300.0):
    """The next result, failing fast when a child died instead of waiting out the timeout."""
    import queue

    deadline = time.monotonic() + timeout
    while True:
        try:
            return out.get(timeout=1.0)
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in procs) or time.monotonic() > deadline:
                raise RuntimeError("a benchmark process failed (see its traceback above)") from None


def handoff(url: str, kind: str, processes: int, rounds: int) -> list[float]:
    """Hand-off latencies in ms: for consecutive holds by different processes, the next
    grant minus the previous release."""
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(processes + 1, timeout=120), ctx.Queue()
    procs = [ctx.Process(target=_contender, args=(url, kind, rounds, start, out)) for _ in range(processes)]
    for p in procs:
        p.start()
    start.wait()
    spans = []
    for _ in procs:
        spans += _get(out, procs)
    for p in procs:
        p.join(timeout=30)
    spans.sort()
    return [(b[0] - a[1]) * 1000 for a, b in zip(spans, spans[1:]) if a[2] != b[2]]


def _one_waiter(url, rounds, ready, out):
    from piano_dist.resources import AccessMode, ResourceCoordinator

    coord = ResourceCoordinator(4, 10.0, connection=redis.Redis.from_url(url), lease=5.0)
    for _ in range(rounds):
        ready.wait()
        lock_id = coord.acquire_resource(RESOURCE, AccessMode.WRITE, "waiter", timeout=10)
        granted = time.time()
        coord.release_resource(lock_id)
        out.put(granted)
    coord.shutdown()


def handoff_one_waiter(url: str, rounds: int) -> list[float]:
    """Release -> grant to the one waiter known to be blocked (2 processes), in ms."""
    from piano_dist.resources import AccessMode, ResourceCoordinator

    coord = ResourceCoordinator(4, 10.0, connection=redis.Redis.from_url(url), lease=5.0)
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=_one_waiter, args=(url, rounds, ready, out))
    proc.start()
    waits = []
    status = coord.get_resource_status
    for _ in range(rounds):
        lock_id = coord.acquire_resource(RESOURCE, AccessMode.WRITE, "holder", timeout=10)
        ready.set()
        while status(RESOURCE)["waiting_requests"] == 0:  # the waiter must be queued, blocked
            time.sleep(0.0005)
        ready.clear()
        released = time.time()
        coord.release_resource(lock_id)
        waits.append((_get(out, [proc]) - released) * 1000)
    proc.join()
    coord.shutdown()
    return waits


def run(url: str, pairs: int, processes: int, rounds: int, one_waiter_rounds: int) -> dict:
    """``processes`` contend for the hand-off (8 in the full and quick runs)."""
    register(url)
    result = {}
    for kind in ("piano", "python-redis-lock"):
        lat = handoff(url, kind, processes, rounds)
        result[kind] = {"pairs_per_s": pairs_per_s(url, kind, pairs),
                        "handoff_processes": processes, "handoffs": len(lat),
                        "handoff_ms_p50": median(lat), "handoff_ms_p95": pct(lat, 0.95)}
    one = handoff_one_waiter(url, one_waiter_rounds)
    result["piano"].update({"one_waiter_handoff_ms_p50": median(one), "one_waiter_handoff_ms_p95": pct(one, 0.95)})
    return result
