"""Waiting for one resource's lock: a request queues in Redis and blocks on a mailbox.

lock_acquire grants at once or queues the request (a place in the resource's queue,
under a lease the LeaseKeeper renews). The waiter blocks on its own mailbox (BLPOP),
where a releasing holder posts the grant; it also wakes when the soonest lease on the
resource could lapse (nobody posts then) and once after ``deadlock_timeout`` to search
the wait-for graph (lock_deadlock), where the youngest waiter of a cycle is the victim
and raises DeadlockError. A waiter that goes away withdraws its request.
"""
from __future__ import annotations

import inspect
import json
import logging
import os
import time
from typing import Callable

import redis

from ..errors import DeadlockError, UnknownResourceError
from ..keys import Keys
from ..replies import as_text
from ..scripts import ScriptSet
from .arguments import require_id
from .lane import ScriptLane
from .lease_keeper import LeaseKeeper
from .owner import current_owner
from .types import AccessMode

log = logging.getLogger("piano_dist.resources")

# Records one deadlock search may read (lock_deadlock.lua): bounds every search's cost
# whatever the queues; a cycle beyond that reach is ended by the waiters' timeouts.
DEADLOCK_SEARCH_BUDGET = 256
MAX_BLOCK = 30.0  # one BLPOP never outlasts this (nor the client's socket timeout, see block_cap)
_UNSET = object()


class LockWaiter:
    def __init__(self, connection: redis.Redis, keys: Keys, scripts: ScriptSet, lane: ScriptLane,
                 keeper: LeaseKeeper, lease: float, deadlock_detection: bool, deadlock_timeout: float,
                 count: Callable[..., None], release: Callable[[str], bool]):
        """``count(*fields)`` counts metrics; ``release(lock_id)`` gives back a grant that
        raced in while the waiter was going away."""
        self.connection = connection
        self.keys = keys
        self._scripts = scripts
        self._lane = lane
        self._keeper = keeper
        self.lease = lease
        self._lease_ms = int(lease * 1000)
        self.enable_deadlock_detection = deadlock_detection
        self.deadlock_timeout = deadlock_timeout
        self._count = count
        self.release_resource = release
        self._acquire_script = scripts.lock_acquire
        self._global_keys = (keys.resource_registry, keys.lock_index, keys.lock_waitfor)
        self._max_block = block_cap(connection)

    def _eval(self, script, keys: tuple, args: tuple):
        """Run a registered script in one round trip (see lane.py)."""
        return self._lane.run(script, keys, args)

    def acquire(self, resource_id: str, mode: AccessMode, holder_id: str,
                     wait: float) -> tuple[str | None, int, str | None]:
        """(lock id, fence, resource type) when granted, else (None, 0, None)."""
        require_id("resource_id", resource_id)
        base = self.keys.resource_base(resource_id)
        lock_id = "lk-" + os.urandom(16).hex()
        owner = current_owner()
        deadline = time.monotonic() + wait
        args = (resource_id, lock_id, mode.value, holder_id, owner, self._lease_ms,
                "1" if wait > 0 else "0")
        lock_keys = (base,) + self._global_keys
        reply = self._eval(self._acquire_script, lock_keys, args)
        status = reply[0]
        if status == b"granted" or status == "granted":
            return lock_id, int(reply[1]), reply[2]
        status = as_text(status)
        if status == "unknown":
            raise UnknownResourceError(f"resource {resource_id!r} is not registered")
        if status == "busy":
            self._count("contention_count")
            return None, 0, None
        self._count("contention_count")
        kind = reply[2]
        self._keeper.track(lock_id, base, "wait")
        try:
            fence = self._wait_for_grant(resource_id, base, lock_id, owner, deadline, int(reply[1]),
                                         list(lock_keys), list(args))
        finally:
            self._keeper.untrack(lock_id)
        return (lock_id, fence, kind) if fence is not None else (None, 0, None)

    def _wait_for_grant(self, resource_id, base, lock_id, owner, deadline, wake_ms,
                        lock_keys, acquire_args) -> int | None:
        try:
            return self._wait_in_queue(resource_id, base, lock_id, owner, deadline, wake_ms,
                                       lock_keys, acquire_args)
        except DeadlockError:
            raise
        except BaseException:
            # The waiter is going away (a Redis error, an interrupt): leave the queue and
            # give back a grant that raced in, so no abandoned request blocks the ones
            # behind it or shows up as a false wait-for cycle.
            try:
                if self._withdraw([base, self.keys.lock_index, self.keys.lock_waitfor], lock_id) is not None:
                    self.release_resource(lock_id)
            except Exception:  # Redis unreachable: the request's lease lapses instead
                log.warning("could not withdraw lock request %s on %s", lock_id, resource_id)
            raise

    def _wait_in_queue(self, resource_id, base, lock_id, owner, deadline, wake_ms,
                       lock_keys, acquire_args) -> int | None:
        """Block on the request's mailbox until granted, timed out or made a deadlock victim.

        Besides mail, the waiter wakes when the soonest lease on the resource could
        lapse (nobody posts then) and once after ``deadlock_timeout`` to look for a cycle.
        """
        mailbox = self.keys.resource_mailbox(resource_id, lock_id)
        wait_keys = [base, self.keys.lock_index, self.keys.lock_waitfor]
        check_deadlock_at = time.monotonic() + self.deadlock_timeout if self.enable_deadlock_detection else None
        while True:
            now = time.monotonic()
            if now >= deadline:
                return self._withdraw(wait_keys, lock_id)
            block = min(deadline - now, self._max_block)
            if wake_ms >= 0:
                block = min(block, wake_ms / 1000.0)
            if check_deadlock_at is not None:
                block = min(block, max(check_deadlock_at - now, 0.0))
            item = self.connection.blpop([mailbox], timeout=max(block, 0.005))
            if item is not None:
                message = as_text(item[1])
                if message.startswith("g:"):
                    return int(message[2:])
                if message.startswith("d:"):
                    return self._abort_as_victim(wait_keys, lock_id, json.loads(message[2:]))
                continue
            # A request past its own deadline just times out: it is no deadlock victim.
            if check_deadlock_at is not None and check_deadlock_at <= time.monotonic() < deadline:
                report = as_text(self._scripts.lock_deadlock(keys=[self.keys.lock_waitfor], args=[owner, DEADLOCK_SEARCH_BUDGET]))
                if report:
                    found = json.loads(report)
                    if found["victim"] == lock_id:
                        return self._abort_as_victim(wait_keys, lock_id, found)
                # A cycle that forms later is found by its own youngest waiter; look
                # again only at lease wake-ups, which come anyway.
                check_deadlock_at = time.monotonic() + max(self.deadlock_timeout, self.lease)
            reply = self._scripts.lock_check_wait(keys=wait_keys, args=[lock_id])
            status = as_text(reply[0])
            if status == "granted":
                return int(reply[1])
            if status == "queued":
                wake_ms = int(reply[1])
                continue
            # Our own place lapsed (this process stalled past its lease): queue again.
            self.connection.delete(mailbox)
            reply = self._scripts.lock_acquire(keys=lock_keys, args=acquire_args)
            status = as_text(reply[0])
            if status == "unknown":
                raise UnknownResourceError(f"resource {resource_id!r} is not registered")
            if status == "granted":
                return int(reply[1])
            wake_ms = int(reply[1])

    def _withdraw(self, wait_keys, lock_id) -> int | None:
        reply = self._scripts.lock_cancel_wait(keys=wait_keys, args=[lock_id])
        return int(reply[1]) if as_text(reply[0]) == "granted" else None

    def _abort_as_victim(self, wait_keys, lock_id, report: dict) -> int | None:
        fence = self._withdraw(wait_keys, lock_id)
        if fence is not None:
            return fence  # granted meanwhile: the cycle is already broken
        raise DeadlockError(describe_cycle(report["cycle"], lock_id))


def block_cap(connection: redis.Redis) -> float:
    """Longest BLPOP for this client: under MAX_BLOCK and a second under its socket
    timeout (redis-py 8 reads with a 5 s timeout unless told otherwise, and a BLPOP that
    outlasts it fails with TimeoutError instead of returning nothing)."""
    pool = connection.connection_pool
    timeout = pool.connection_kwargs.get("socket_timeout", _UNSET)
    for cls in getattr(pool.connection_class, "__mro__", ()):  # the default, where declared
        if timeout is not _UNSET:
            break
        try:
            timeout = inspect.signature(cls.__dict__["__init__"]).parameters["socket_timeout"].default
        except (KeyError, TypeError, ValueError):
            pass
    if not isinstance(timeout, (int, float)):
        return MAX_BLOCK  # None: reads wait as long as they must
    return max(min(MAX_BLOCK, timeout - 1.0), min(timeout / 2, 0.5), 0.01)


def describe_cycle(cycle: list[dict], victim: str) -> str:
    steps = " -> ".join(f"{c['holder']!r} waits for {c['resource']!r} ({c['mode']})" for c in cycle)
    chosen = next((c for c in cycle if c["waiter"] == victim), cycle[-1])
    return (f"deadlock: {steps} -> back to {cycle[0]['holder']!r}; aborted the youngest waiter "
            f"{chosen['holder']!r} on {chosen['resource']!r}")
