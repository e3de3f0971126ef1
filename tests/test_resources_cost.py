"""What one lock script call costs Redis, whatever the queue of waiters or watchers.

Each scenario builds a resource with N requests queued (or N acquire_many callers
watching) by calling the scripts directly, then counts the Redis commands run inside one
script call (INFO commandstats before and after, on a redis-server of this module's own
so no other client's commands are counted). The count must be the same at N = 20 and
N = 400. Before the O(1) rework a deadlock search from the back of a 400-long queue ran
81,807 commands (80,603 HGETs) against 297 at N = 20, and a release with 400 watchers
posted to every one of them (814 against 54).
"""
from __future__ import annotations

import json

import pytest

from piano_dist.keys import Keys
from piano_dist.resources.coordinator import DEADLOCK_SEARCH_BUDGET
from piano_dist.scripts import ScriptSet
from support.redis_server import RedisServer

K = Keys()
LONG = 60_000  # ms: leases that do not lapse during a test
NOT_IN_SCRIPTS = {"info", "evalsha", "eval", "script", "script|load", "flushall"}


@pytest.fixture(scope="module")
def server():
    srv = RedisServer().start()
    yield srv
    srv.close()


@pytest.fixture
def locks(server):
    client = server.client()
    client.flushall()
    yield Locks(client)
    client.close()


class Locks:
    """The lock scripts called directly, one request per call (no waiting threads)."""

    def __init__(self, client):
        self.c = client
        self.s = ScriptSet(client)

    def register(self, *resource_ids):
        for rid in resource_ids:
            self.c.hset(K.resource_registry, rid, "computation")

    def acquire(self, rid, lock_id, owner, mode="write", lease=LONG, queue=True):
        return self.s.lock_acquire(keys=[K.resource_base(rid), K.resource_registry, K.lock_index, K.lock_waitfor],
                                   args=[rid, lock_id, mode, owner, owner, lease, "1" if queue else "0"])

    def release(self, rid, lock_id):
        return self.s.lock_release(keys=[K.resource_base(rid), K.lock_index, K.lock_waitfor], args=[lock_id])

    def check_wait(self, rid, waiter_id):
        return self.s.lock_check_wait(keys=[K.resource_base(rid), K.lock_index, K.lock_waitfor], args=[waiter_id])

    def cancel(self, rid, waiter_id):
        return self.s.lock_cancel_wait(keys=[K.resource_base(rid), K.lock_index, K.lock_waitfor], args=[waiter_id])

    def deadlock(self, owner):
        raw = self.s.lock_deadlock(keys=[K.lock_waitfor], args=[owner, DEADLOCK_SEARCH_BUDGET])
        return json.loads(raw) if raw else None

    def many(self, owner, requests, box, how="watch"):
        """requests: (resource id, lock id, mode) triples."""
        keys = [K.resource_registry, K.lock_index, K.lock_waitfor] + [K.resource_base(r) for r, _, _ in requests]
        args = [owner, owner, LONG, box, how]
        for triple in requests:
            args += list(triple)
        return self.s.lock_acquire_many(keys=keys, args=args)

    def expire(self, rid, part, member):
        """Make a holder's (part="holders") or waiter's (part="wlease") lease lapse."""
        assert self.c.zadd(K.resource_part(rid, part), {member: 1}, xx=True, ch=True) == 1

    def mail(self, box):
        return [m.decode() for m in self.c.lrange(box, 0, -1)]

    def commands(self, call):
        """(commands run inside the call, per command, the call's reply)."""
        before = self._calls()
        reply = call()
        after = self._calls()
        per = {name: n - before.get(name, 0) for name, n in after.items()
               if name not in NOT_IN_SCRIPTS and n - before.get(name, 0)}
        return sum(per.values()), per, reply

    def _calls(self):
        return {name[len("cmdstat_"):]: stat["calls"] for name, stat in self.c.info("commandstats").items()}


def _queue(locks, n, rid="r"):
    """H holds rid; its owner waits on r2, held by G (a chain, no cycle); n writers queue on rid."""
    locks.register(rid, "r2", "r3")
    assert locks.acquire(rid, "H", "oH")[0] == b"granted"
    assert locks.acquire("r2", "G", "oG")[0] == b"granted"
    assert locks.acquire("r2", "Hw", "oH")[0] == b"queued"
    for i in range(n):
        assert locks.acquire(rid, f"w{i}", f"o{i}")[0] == b"queued"


def _watchers(locks, n, rid="r"):
    """H holds rid; n acquire_many callers refused by it watch it."""
    locks.register(rid)
    assert locks.acquire(rid, "H", "oH")[0] == b"granted"
    for i in range(n):
        assert locks.many(f"m{i}", [(rid, f"mw{i}", "write")], f"box{i}")[0] == b"busy"


def _deadlock_search(locks, n):
    _queue(locks, n)
    return lambda: locks.deadlock(f"o{n - 1}")


def _deadlock_cycle(locks, n):
    _queue(locks, n)
    last = f"o{n - 1}"
    assert locks.acquire("r3", "X", last)[0] == b"granted"  # the last waiter holds r3 ...
    assert locks.cancel("r2", "Hw")[0] == b"cancelled"
    assert locks.acquire("r3", "Hw3", "oH")[0] == b"queued"  # ... which H, holding r, waits for
    # H began waiting a second after the last waiter (Redis time has ms ties otherwise)
    edge = json.loads(locks.c.hget(K.lock_waitfor, "oH"))
    edge["since"] = json.loads(locks.c.hget(K.lock_waitfor, last))["since"] + 1000
    locks.c.hset(K.lock_waitfor, "oH", json.dumps(edge))
    return lambda: locks.deadlock(last)


def _check_wait(locks, n):
    _queue(locks, n)
    return lambda: locks.check_wait("r", f"w{n - 1}")


def _check_wait_after_lapse(locks, n):
    _queue(locks, n)
    locks.expire("r", "holders", "H")
    return lambda: locks.check_wait("r", f"w{n - 1}")


def _join_queue(locks, n):
    _queue(locks, n)
    return lambda: locks.acquire("r", "new", "o-new")


def _cancel_middle(locks, n):
    _queue(locks, n)
    return lambda: locks.cancel("r", f"w{n // 2}")


def _hand_off(locks, n):
    _queue(locks, n)
    return lambda: locks.release("r", "H")


def _release_with_watchers(locks, n):
    _watchers(locks, n)
    return lambda: locks.release("r", "H")


def _acquire_many_with_watchers(locks, n):
    _watchers(locks, n)
    return lambda: locks.many("m-new", [("r", "mw-new", "write")], "box-new")


def _lapse_with_watchers(locks, n):
    _watchers(locks, n)
    assert locks.acquire("r", "Q", "oQ")[0] == b"queued"
    locks.expire("r", "holders", "H")
    return lambda: locks.check_wait("r", "Q")


SCENARIOS = {
    "deadlock search, no cycle": _deadlock_search,
    "deadlock search, cycle": _deadlock_cycle,
    "check-wait": _check_wait,
    "check-wait after the holder lapsed": _check_wait_after_lapse,
    "acquire joining the queue": _join_queue,
    "cancel in the middle": _cancel_middle,
    "release handing off": _hand_off,
    "release with watchers": _release_with_watchers,
    "acquire_many with watchers": _acquire_many_with_watchers,
    "lapse with watchers": _lapse_with_watchers,
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_commands_per_call_do_not_grow_with_the_queue(locks, name):
    counts = {}
    for n in (20, 400):
        locks.c.flushall()
        call = SCENARIOS[name](locks, n)
        counts[n], per, _ = locks.commands(call)
        print(f"{name}: N={n}: {counts[n]} commands {per}")
    assert counts[400] == counts[20], f"{name}: {counts} commands at N=20 vs N=400"
    assert counts[400] <= 40


def test_a_deadlock_behind_a_long_queue_is_found_with_its_youngest_waiter(locks):
    call = _deadlock_cycle(locks, 400)
    report = call()
    assert [c["owner"] for c in report["cycle"]] == ["o399", "oH"]
    assert report["victim"] == "Hw3"  # H queued for r3 after o399 queued for r: the youngest
    # the victim is told through its mailbox, since another owner found the cycle
    assert locks.mail(K.resource_mailbox("r3", "Hw3"))[0].startswith("d:")
    # the other member finds the same cycle and victim; a waiter merely queued behind the
    # cycle is not in it (it is freed once the victim's caller lets go)
    assert locks.deadlock("oH")["victim"] == "Hw3"
    assert locks.deadlock("o0") is None


def test_no_cycle_through_a_long_queue_is_reported(locks):
    assert _deadlock_search(locks, 400)() is None
    assert locks.deadlock("oH") is None  # H waits on r2 for G, who waits on nothing


def test_a_lapse_wakes_the_one_waiter_it_concerns(locks):
    """The head sleeps until the holder's lease could end, every other waiter until the
    lease of the waiter ahead of it could: a holder that dies wakes one waiter, not the queue."""
    locks.register("r")
    locks.acquire("r", "H", "oH", lease=5_000)
    wakes = [int(locks.acquire("r", f"w{i}", f"o{i}", lease=LONG)[1]) for i in range(50)]
    assert 0 < wakes[0] <= 5_001
    assert all(LONG - 10_000 < w <= LONG + 1 for w in wakes[1:]), wakes
    # the waiter ahead of w10 dies: w10 is due to look, and finds itself next in line
    locks.expire("r", "wlease", "w9")
    assert int(locks.check_wait("r", "w10")[1]) > LONG - 10_000  # w9 purged; w8 is ahead now
    assert locks.c.zscore(K.resource_part("r", "queue"), "w9") is None


def test_lapsed_entries_are_purged_a_batch_per_call(locks):
    locks.register("r")
    locks.acquire("r", "H", "oH")
    for i in range(250):
        locks.acquire("r", f"dead{i}", f"d{i}")
    locks.acquire("r", "live", "o-live")
    for i in range(250):
        locks.expire("r", "wlease", f"dead{i}")
    queue = K.resource_part("r", "queue")
    status, wake = locks.check_wait("r", "live")
    assert status == b"queued" and int(wake) == 1  # the waiter ahead lapsed: look again at once
    # purge drops 100 lapsed waiters, and serving the queue skips 100 more lapsed heads
    assert locks.c.zcard(queue) == 51
    locks.check_wait("r", "live")
    assert locks.c.zcard(queue) == 1
    assert locks.release("r", "H") == 1
    assert locks.mail(K.resource_mailbox("r", "live"))[0].startswith("g:")


def test_a_release_gives_one_watcher_a_turn_and_the_turn_goes_round(locks):
    """Watchers refused elsewhere pass the turn on until one that fits takes the resource;
    each gets one try per change, and the turn stops once the resource is taken."""
    locks.register("r", *[f"s{i}" for i in range(5)])
    locks.acquire("r", "H", "oH")
    for i in range(5):
        locks.acquire(f"s{i}", f"S{i}", f"oS{i}")
        assert locks.many(f"m{i}", [("r", f"a{i}", "write"), (f"s{i}", f"b{i}", "write")], f"box{i}")[0] == b"busy"
    assert locks.many("m5", [("r", "a5", "write")], "box5")[0] == b"busy"
    assert locks.release("r", "H") == 1
    boxes = [f"box{i}" for i in range(6)]
    for i in range(5):
        assert [b for b in boxes if locks.mail(b)] == [f"box{i}"]  # one turn at a time, oldest first
        locks.c.delete(f"box{i}")
        assert locks.many(f"m{i}", [("r", f"a{i}", "write"), (f"s{i}", f"b{i}", "write")], f"box{i}")[0] == b"busy"
        # refused by s{i} alone now: it watches s{i}, not r
        assert locks.c.zscore(K.resource_part("r", "watch:write"), f"box{i}") is None
        assert locks.c.zscore(K.resource_part(f"s{i}", "watch:write"), f"box{i}") is not None
    assert locks.mail("box5") == ["n"]
    assert locks.many("m5", [("r", "a5", "write")], "box5")[0] == b"granted"
    assert [b for b in boxes if locks.mail(b)] == ["box5"]  # taken: no more turns


def test_a_turn_ends_after_every_watcher_tried_once(locks):
    locks.register("r", "s")
    locks.acquire("r", "H", "oH")
    locks.acquire("s", "S", "oS")
    for i in range(3):
        locks.many(f"m{i}", [("r", f"a{i}", "write"), ("s", f"b{i}", "write")], f"box{i}")
    locks.release("r", "H")
    tries = 0
    while True:
        due = [i for i in range(3) if locks.mail(f"box{i}")]
        if not due:
            break
        assert len(due) == 1 and tries < 3
        locks.c.delete(f"box{due[0]}")
        locks.many(f"m{due[0]}", [("r", f"a{due[0]}", "write"), ("s", f"b{due[0]}", "write")], f"box{due[0]}")
        tries += 1
    assert tries == 3  # each once, then the turn stops (no loop while s stays busy)
    assert locks.c.zcard(K.resource_part("s", "watch:write")) == 3


def test_a_reader_release_turns_only_reader_watchers(locks):
    locks.register("r")
    locks.acquire("r", "R1", "o1", mode="read")
    locks.acquire("r", "R2", "o2", mode="read")
    locks.acquire("r", "W", "oW", mode="write", queue=False)
    assert locks.many("mw", [("r", "aw", "write")], "box-w")[0] == b"busy"
    locks.c.hset(K.resource_registry, "r", "computation")
    locks.acquire("r", "WX", "oX")  # a queued writer: nobody passes it
    assert locks.many("mr", [("r", "ar", "read")], "box-r")[0] == b"busy"
    locks.cancel("r", "WX")  # the queue empties, a reader still holds: only readers fit
    assert locks.mail("box-r") == ["n"] and locks.mail("box-w") == []
    assert locks.many("mr", [("r", "ar", "read")], "box-r")[0] == b"granted"
    for lock_id in ("R1", "R2", "ar"):
        locks.release("r", lock_id)
    assert locks.mail("box-w") == ["n"]


def test_leaving_withdraws_and_passes_the_turn_on(locks):
    _watchers(locks, 2)
    locks.release("r", "H")
    assert locks.mail("box0") == ["n"] and locks.mail("box1") == []
    assert locks.many("m0", [("r", "mw0", "write")], "box0", how="leave") == [b"left"]
    assert locks.mail("box1") == ["n"]
    assert locks.c.zcard(K.resource_part("r", "watch:write")) == 0


def test_a_retried_acquire_many_finds_its_own_grant(locks):
    locks.register("a", "b")
    first = locks.many("m", [("a", "la", "write"), ("b", "lb", "read")], "box")
    assert first[0] == b"granted"
    assert locks.many("m", [("a", "la", "write"), ("b", "lb", "read")], "box") == first
