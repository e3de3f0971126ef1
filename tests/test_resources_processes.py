"""Lock behaviour with holders in different processes (real processes, private Redis)."""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time

import pytest
import redis

from piano_dist.resources import AccessMode, ResourceCoordinator, ResourceType
from support import resource_procs as procs
from support.waiting import wait_until

ctx = mp.get_context("fork")
R, W = AccessMode.READ, AccessMode.WRITE


@pytest.fixture
def coord(redis_url):
    c = ResourceCoordinator(10, 2.0, connection=redis.Redis.from_url(redis_url), lease=1.0)
    c.register_resource("mem", None, ResourceType.EPISODIC_MEMORY)
    c.register_resource("sem", None, ResourceType.SEMANTIC_MEMORY)
    yield c
    c.shutdown()


@pytest.fixture
def children():
    started = []

    def start(target, *args):
        p = ctx.Process(target=target, args=args, daemon=True)
        p.start()
        started.append(p)
        return p

    yield start
    for p in started:
        if p.is_alive():
            os.kill(p.pid, signal.SIGKILL)
        p.join(5)


def test_two_readers_in_two_processes_hold_at_once(coord, children, redis_url):
    report, release = ctx.Queue(), ctx.Event()
    for name in ("reader-a", "reader-b"):
        children(procs.hold, redis_url, "mem", "read", name, report, release)
    held = [report.get(timeout=10), report.get(timeout=10)]
    assert all(kind == "held" and lock_id for kind, lock_id, _ in held)
    status = coord.get_resource_status("mem")
    assert sorted(status["readers"]) == ["reader-a", "reader-b"] and status["writer"] is None
    release.set()
    assert {report.get(timeout=10) for _ in range(2)} == {("released", True)}


def test_reader_times_out_while_a_writer_in_another_process_holds(coord, children, redis_url):
    report, release = ctx.Queue(), ctx.Event()
    children(procs.hold, redis_url, "mem", "write", "writer", report, release)
    assert report.get(timeout=10)[0] == "held"
    started = time.monotonic()
    assert coord.acquire_resource("mem", R, "reader", timeout=0.4) is None
    assert time.monotonic() - started >= 0.4
    assert coord.get_coordinator_metrics().timeout_count == 1
    release.set()
    assert report.get(timeout=10) == ("released", True)
    assert coord.acquire_resource("mem", R, "reader", timeout=2)


@pytest.mark.parametrize("fail", [False, True])
def test_context_manager_in_another_process_releases(coord, children, redis_url, fail):
    report = ctx.Queue()
    blocker = coord.acquire_resource("mem", R, "parent", timeout=0)
    children(procs.use_context, redis_url, "mem", "child", report, fail)
    wait_until(lambda: coord.get_resource_status("mem")["waiting_requests"] == 1, 10, message="child queued")
    coord.release_resource(blocker)
    assert report.get(timeout=10) == ("inside", None)  # no local object in the child
    if fail:
        assert report.get(timeout=10) == ("raised", "boom inside the block")
    assert report.get(timeout=10) == ("done", 0)
    assert coord.acquire_resource("mem", W, "parent", timeout=0)


def test_lock_of_a_sigkilled_holder_frees_within_one_lease(coord, children, redis_url):
    report, release = ctx.Queue(), ctx.Event()
    lease = 1.0
    child = children(procs.hold, redis_url, "mem", "write", "doomed", report, release, lease)
    kind, lock_id, pid = report.get(timeout=10)
    first_expiry = coord.get_resource_status("mem")["locks"][0]["expires_at"]
    # alive, the holder keeps renewing: the lock outlasts several leases
    wait_until(lambda: coord.get_resource_status("mem")["locks"][0]["expires_at"] > first_expiry + 2 * lease,
               10, message="holder renewing its lease")
    assert coord.get_resource_status("mem")["locks"][0]["lock_id"] == lock_id
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    got = coord.acquire_resource("mem", W, "survivor", timeout=5)
    freed_after = time.monotonic() - killed_at
    assert got, "the dead holder's lock was never freed"
    assert freed_after <= lease + 0.5, f"freed {freed_after:.2f}s after the kill (lease {lease}s)"
    assert coord.release_resource(got)
    child.join(5)


def test_deadlock_between_two_processes_is_detected_and_broken(coord, children, redis_url):
    report, go = ctx.Queue(), ctx.Event()
    children(procs.cross_lock, redis_url, "mem", "sem", "alice", report, go, True)
    children(procs.cross_lock, redis_url, "sem", "mem", "bob", report, go, True)
    assert {report.get(timeout=10) for _ in range(2)} == {("held", "alice"), ("held", "bob")}
    go.set()
    outcomes = {}
    for _ in range(2):
        kind, holder, message, waited = report.get(timeout=15)
        outcomes[kind] = (holder, message, waited)
    assert set(outcomes) == {"deadlock", "acquired"}
    victim, message, waited = outcomes["deadlock"]
    assert "'mem'" in message and "'sem'" in message and "alice" in message and "bob" in message
    assert waited < 3.0, f"cycle broken only after {waited:.1f}s (timeout was 6s)"
    assert outcomes["acquired"][0] != victim


def test_without_detection_the_timeouts_still_end_a_deadlock(coord, children, redis_url):
    report, go = ctx.Queue(), ctx.Event()
    children(procs.cross_lock, redis_url, "mem", "sem", "alice", report, go, False)
    children(procs.cross_lock, redis_url, "sem", "mem", "bob", report, go, False)
    assert {report.get(timeout=10)[0] for _ in range(2)} == {"held"}
    go.set()
    kinds = [report.get(timeout=15)[0] for _ in range(2)]
    assert kinds.count("deadlock") == 0 and "timeout" in kinds


def test_a_writer_behind_a_stream_of_readers_gets_in(coord, children, redis_url):
    report, stop = ctx.Queue(), ctx.Event()
    holds = (0.11, 0.13, 0.17, 0.19)  # different periods keep the readers out of phase
    for hold in holds:
        children(procs.reader_stream, redis_url, "mem", stop, hold, report)
    # readers overlap continuously: without writer preference a writer never sees zero readers
    wait_until(lambda: len(coord.get_resource_status("mem")["readers"]) >= 3, 10, message="readers streaming")
    started = time.monotonic()
    lock_id = coord.acquire_resource("mem", W, "writer", timeout=8)
    waited = time.monotonic() - started
    assert lock_id, "writer starved behind the readers"
    assert coord.get_resource_status("mem")["readers"] == []
    coord.release_resource(lock_id)
    stop.set()
    reads = [report.get(timeout=15)[1] for _ in holds]
    assert all(n > 0 for n in reads)
    print(f"writer waited {waited:.3f}s behind {sum(reads)} reads")
