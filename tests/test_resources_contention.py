"""Many requests on one resource through the coordinator (threads, private Redis): turns
for acquire_many callers, deadlocks behind a long queue, leases of many waiters."""
from __future__ import annotations

import threading
import time

import pytest
import redis

from piano_dist.resources import AccessMode, DeadlockError, ResourceCoordinator, ResourceType
from support.waiting import wait_until

W = AccessMode.WRITE
LEASE = 30.0  # lease wake-ups (about 20 s away) cannot be what serves anyone here


@pytest.fixture
def coord(redis_url):
    c = ResourceCoordinator(200, 10.0, connection=redis.Redis.from_url(redis_url, max_connections=500),
                            lease=LEASE, deadlock_timeout=0.3)
    for rid in ("r", "s", "r1", "r2"):
        c.register_resource(rid, None, ResourceType.COMPUTATION)
    yield c
    c.shutdown()


def _in_thread(fn, *args, **kw):
    out = {}

    def run():
        try:
            out["value"] = fn(*args, **kw)
        except Exception as exc:
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    return t, out


def _take_and_release(coord, rid, holder, timeout):
    lock_id = coord.acquire_resource(rid, W, holder, timeout=timeout)
    if lock_id:
        coord.release_resource(lock_id)
    return lock_id


def _watching(coord, rid, mode="write"):
    return coord.connection.zcard(coord.keys.resource_part(rid, f"watch:{mode}"))


def test_a_caller_refused_elsewhere_passes_its_turn_to_one_that_fits(coord):
    held_r = coord.acquire_resource("r", W, "main", timeout=0)
    t_s, s_holder = _in_thread(coord.acquire_resource, "s", W, "s-holder", timeout=0)
    t_s.join(5)
    both_t, both = _in_thread(coord.acquire_many, [("r", W), ("s", W)], "both", timeout=10)
    wait_until(lambda: _watching(coord, "r") == 1, 5, message="the pair caller watching r")
    one_t, one = _in_thread(coord.acquire_many, [("r", W)], "r-only", timeout=10)
    wait_until(lambda: _watching(coord, "r") == 2, 5, message="the r-only caller watching r")
    coord.release_resource(held_r)
    one_t.join(5)  # the pair caller had the first turn, was refused by s and passed it on
    assert one.get("value") and both_t.is_alive()
    assert _watching(coord, "s") == 1 and _watching(coord, "r") == 0  # it waits on s alone now
    coord.release_resource(s_holder["value"])
    wait_until(lambda: _watching(coord, "r") == 1, 5, message="the pair caller refused by r, watching it")
    coord.release_resource(one["value"][0])
    both_t.join(5)
    assert len(both.get("value") or []) == 2
    for lock_id in both["value"]:
        coord.release_resource(lock_id)


def test_an_acquire_many_that_gives_up_leaves_no_registration(coord):
    held = coord.acquire_resource("r", W, "main", timeout=0)
    assert coord.acquire_many([("r", W), ("s", W)], "late", timeout=0.3) is None
    assert _watching(coord, "r") == 0 and _watching(coord, "s") == 0
    coord.release_resource(held)


def _party(coord, first, second, name, held, go):
    """Hold ``first``; when told, ask for ``second`` (half of a deadlock, in one thread)."""
    mine = coord.acquire_resource(first, W, name, timeout=0)
    held.set()
    go.wait(10)
    try:
        other = coord.acquire_resource(second, W, name, timeout=10)
    except DeadlockError as exc:
        coord.release_resource(mine)  # what a victim's caller does
        return exc
    coord.release_resource(other)
    coord.release_resource(mine)
    return other


def test_a_deadlock_behind_a_long_queue_is_broken_and_the_queue_served(coord):
    events = {n: (threading.Event(), threading.Event()) for n in "ab"}
    a_t, a = _in_thread(_party, coord, "r1", "r2", "a", *events["a"])
    b_t, b = _in_thread(_party, coord, "r2", "r1", "b", *events["b"])
    assert events["a"][0].wait(5) and events["b"][0].wait(5)
    queued = [_in_thread(_take_and_release, coord, "r1", f"q{i}", 10) for i in range(30)]
    wait_until(lambda: coord.get_resource_status("r1")["waiting_requests"] == 30, 10, message="30 queued on r1")
    events["a"][1].set()
    wait_until(lambda: coord.get_resource_status("r2")["waiting_requests"] == 1, 5, message="a waits for r2")
    events["b"][1].set()  # b, behind 30 requests, waits for a, who waits for b
    b_t.join(10)
    assert isinstance(b.get("value"), DeadlockError), b  # b asked last: the youngest
    assert "'b' waits for 'r1'" in str(b["value"]) and "'a' waits for 'r2'" in str(b["value"])
    a_t.join(5)
    assert a.get("value"), a
    for thread, got in queued:
        thread.join(10)
        assert got.get("value"), got


def test_every_queued_request_of_a_process_keeps_its_place(redis_url):
    """A process with 300 requests queued renews all their leases (in a few pipelines)."""
    c = ResourceCoordinator(400, 10.0, connection=redis.Redis.from_url(redis_url, max_connections=500),
                            lease=1.0, enable_deadlock_detection=False)
    try:
        c.register_resource("r", None, ResourceType.COMPUTATION)
        held = c.acquire_resource("r", W, "main", timeout=0)
        waiters = [_in_thread(_take_and_release, c, "r", f"q{i}", 30) for i in range(300)]
        wait_until(lambda: c.get_resource_status("r")["waiting_requests"] == 300, 20, message="300 queued")
        wlease = c.keys.resource_part("r", "wlease")
        first = dict(c.connection.zrange(wlease, 0, -1, withscores=True))

        def all_renewed():  # each place renewed past where it stood; none lapsed (1 s lease)
            now = dict(c.connection.zrange(wlease, 0, -1, withscores=True))
            return now.keys() == first.keys() and all(now[m] > first[m] + 500 for m in first)

        wait_until(all_renewed, 10, message="every waiter's lease renewed")
        c.release_resource(held)
        for thread, got in waiters:
            thread.join(20)
            assert got.get("value"), got
    finally:
        c.shutdown()


def test_a_wait_longer_than_the_socket_timeout_is_not_an_error(redis_url):
    """Each BLPOP stays under the client's socket timeout (redis-py 8: 5 s by default),
    however far away the next lease lapse or the deadline is."""
    c = ResourceCoordinator(10, 10.0, connection=redis.Redis.from_url(redis_url, socket_timeout=1.0),
                            lease=LEASE)
    try:
        c.register_resource("r", None, ResourceType.COMPUTATION)
        held = c.acquire_resource("r", W, "main", timeout=0)
        t, got = _in_thread(_take_and_release, c, "r", "patient", 10)
        wait_until(lambda: c.get_resource_status("r")["waiting_requests"] == 1, 5, message="queued")
        time.sleep(2.5)  # the behaviour under test: waiting well past the 1 s socket timeout
        c.release_resource(held)
        t.join(5)
        assert got.get("value"), got
    finally:
        c.shutdown()
