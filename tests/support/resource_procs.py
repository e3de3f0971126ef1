"""Bodies of the child processes used by the resource-lock tests.

Each child builds its own ResourceCoordinator from the Redis URL (nothing shared with
the parent but Redis) and reports through a multiprocessing queue.
"""
from __future__ import annotations

import os
import random
import signal
import time

import redis

from piano_dist.resources import (AccessMode, DeadlockError, FENCE_CHECK_LUA, FencedWriteRejected,
                                  ResourceCoordinator, fence_args, raise_if_fenced)

# The fence-check convention of piano_dist.resources.fencing, then the write: set the
# counter to the value computed by the client and count the accepted write.
FENCED_STORE = FENCE_CHECK_LUA + """
redis.call('SET', KEYS[1], ARGV[3])
redis.call('INCR', KEYS[2])
return 1
"""


def coordinator(url: str, **kw) -> ResourceCoordinator:
    kw.setdefault("lease", 1.0)
    return ResourceCoordinator(max_concurrent_locks=10, default_timeout=5.0,
                               connection=redis.Redis.from_url(url), **kw)


def hold(url, resource_id, mode, holder, report, release_event, lease=1.0):
    """Acquire, report ("held", lock_id, pid), keep holding until told to release."""
    coord = coordinator(url, lease=lease)
    lock_id = coord.acquire_resource(resource_id, AccessMode(mode), holder, timeout=5)
    report.put(("held", lock_id, os.getpid()))
    release_event.wait(30)
    report.put(("released", coord.release_resource(lock_id)))
    coord.shutdown()


def use_context(url, resource_id, holder, report, fail):
    coord = coordinator(url)
    coord.register_resource("ctx-local", {"n": 0}, "computation")
    try:
        with coord.acquire_context(resource_id, AccessMode.WRITE, holder, timeout=5) as obj:
            report.put(("inside", obj))
            if fail:
                raise RuntimeError("boom inside the block")
    except RuntimeError as exc:
        report.put(("raised", str(exc)))
    report.put(("done", coord.get_resource_status(resource_id)["active_locks"]))


def cross_lock(url, first, second, holder, report, go_event, detection):
    """Hold `first`, then (when told) ask for `second`: half of a deadlock."""
    coord = coordinator(url, enable_deadlock_detection=detection, deadlock_timeout=0.3)
    held = coord.acquire_resource(first, AccessMode.WRITE, holder, timeout=5)
    report.put(("held", holder))
    go_event.wait(30)
    started = time.monotonic()
    try:
        got = coord.acquire_resource(second, AccessMode.WRITE, holder, timeout=6 if detection else 1.0)
    except DeadlockError as exc:
        coord.release_resource(held)
        report.put(("deadlock", holder, str(exc), time.monotonic() - started))
        return
    report.put(("acquired" if got else "timeout", holder, None, time.monotonic() - started))
    if got:
        coord.release_resource(got)
    coord.release_resource(held)


def reader_stream(url, resource_id, stop_event, hold_seconds, report):
    coord = coordinator(url)
    count = 0
    while not stop_event.is_set():
        lock_id = coord.acquire_resource(resource_id, AccessMode.READ, f"reader-{os.getpid()}", timeout=10)
        if lock_id:
            count += 1
            stop_event.wait(hold_seconds)
            coord.release_resource(lock_id)
    report.put(("reads", count))


def incrementer(url, resource_id, counter_key, accepted_key, rejected_key, n, lease, seed):
    """n read-modify-write increments of a counter under WRITE, each write fenced."""
    rng = random.Random(seed)
    conn = redis.Redis.from_url(url)
    store = conn.register_script(FENCED_STORE)
    coord = ResourceCoordinator(max_concurrent_locks=2, default_timeout=30.0, connection=conn,
                                lease=lease)
    for _ in range(n):
        with coord.acquire_context(resource_id, AccessMode.WRITE, "incrementer"):
            value = int(conn.get(counter_key) or 0)
            if rng.random() < 0.05:
                time.sleep(rng.random() * 0.01)  # widen the window a little
            try:
                try:
                    store(keys=[counter_key, accepted_key], args=[*fence_args(resource_id), value + 1])
                except redis.ResponseError as exc:
                    raise_if_fenced(exc)
                    raise
            except FencedWriteRejected:
                conn.incr(rejected_key)
    coord.shutdown()


def paused_writer(url, resource_id, counter_key, accepted_key, rejected_key, report, lease):
    """Read under WRITE, stop itself (as a GC pause or a frozen VM would), then write.

    Publishes its token at ``<counter_key>:paused-token`` just before it stops."""
    conn = redis.Redis.from_url(url)
    store = conn.register_script(FENCED_STORE)
    coord = ResourceCoordinator(max_concurrent_locks=2, default_timeout=30.0, connection=conn,
                                lease=lease)
    lock_id = coord.acquire_resource(resource_id, AccessMode.WRITE, "paused-writer", timeout=30)
    value = int(conn.get(counter_key) or 0)
    # Redis, not the queue: a queue's feeder thread would be frozen before it sends.
    conn.set(f"{counter_key}:paused-token", fence_args(resource_id)[1])
    os.kill(os.getpid(), signal.SIGSTOP)
    try:
        try:
            store(keys=[counter_key, accepted_key], args=[*fence_args(resource_id), value + 1])
        except redis.ResponseError as exc:
            raise_if_fenced(exc)
            raise
        report.put(("accepted", None))
    except FencedWriteRejected as exc:
        conn.incr(rejected_key)
        report.put(("rejected", str(exc)))
    report.put(("release", coord.release_resource(lock_id)))
    coord.shutdown()


def queue_writers(url, resource_id, threads, lease, report):
    """``threads`` threads each ask once for WRITE (all queue behind a holder), note the
    fence they were granted and release at once; reports [(lock_id, fence), ...]."""
    import threading

    from piano_dist.resources import current_fence

    coord = ResourceCoordinator(max_concurrent_locks=threads, default_timeout=300.0,
                                redis_url=url, lease=lease)  # a pool with room for every BLPOP
    got, failed = [], []

    def one(i):
        try:
            lock_id = coord.acquire_resource(resource_id, AccessMode.WRITE, f"{os.getpid()}-{i}", timeout=300)
            fence = current_fence(resource_id)[1]
            coord.release_resource(lock_id)
            got.append((lock_id, fence))
        except Exception as exc:  # reported, so the test names it
            failed.append(repr(exc))

    workers = [threading.Thread(target=one, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    coord.shutdown()
    report.put((got, failed))
