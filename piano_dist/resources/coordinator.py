"""ResourceCoordinator: READ/WRITE/EXCLUSIVE locks on shared resources, across processes.

Every transition (grant, queue, hand-off, release, lease lapse) is one Lua script in
piano_dist/lua/lock_*.lua; this class adds the waiting (one BLPOP mailbox per
request), lease renewal, fencing bookkeeping, deadlock checks and local metrics.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
import re
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

import redis

from ..connection import get_connection
from ..errors import (DeadlockError, LockLimitError, ResourceAcquireTimeout, ResourceBusyError,
                      UnknownResourceError)
from ..keys import Keys
from ..scripts import ScriptSet
from . import fencing
from .lane import ScriptLane
from .lease_keeper import LeaseKeeper
from .owner import current_owner
from .status import all_resource_status, registered_resources, release_lock, resource_status
from .types import (AccessMode, ResourceLock, ResourceMetrics, ResourceType, parse_access_mode,
                    parse_resource_type)

log = logging.getLogger("piano_dist.resources")

DEFAULT_LEASE = 5.0
DEFAULT_MAX_HOLD = 600.0
DEFAULT_DEADLOCK_TIMEOUT = 0.5
# Records one deadlock search may read (lock_deadlock.lua): bounds every search's cost
# whatever the queues; a cycle beyond that reach is ended by the waiters' timeouts.
DEADLOCK_SEARCH_BUDGET = 256
_MAX_BLOCK = 30.0  # one BLPOP never outlasts this (nor the client's socket timeout, see _block_cap)
_FORBIDDEN_ID_RE = re.compile(r"[{}\r\n\t ]")  # braces would break the {resource_id} hash tag
_UNSET = object()
_TYPES = {**{t.value: t for t in ResourceType}, **{t.value.encode(): t for t in ResourceType}}


def _type_of(raw) -> ResourceType | None:
    """The ResourceType a registry value names, or None (missing or not a known type)."""
    return _TYPES.get(raw) if raw is not None else None


@dataclasses.dataclass
class _Held:
    lock: ResourceLock
    base: str


class ResourceCoordinator:
    """Locks on registered resources, shared by every process using the same Redis.

    ``max_concurrent_locks`` caps the locks held through *this* coordinator at once;
    ``default_timeout`` is how long an acquisition waits when no timeout is given
    (0 means try once). ``lease`` is how long a lock outlives its process;
    ``max_hold`` caps how long a lock is renewed (None: as long as the process lives).
    """

    def __init__(self, max_concurrent_locks: int = 50, default_timeout: float = 30.0,
                 enable_deadlock_detection: bool = True, cleanup_interval: float = 60, *,
                 redis_url: str | None = None, connection: redis.Redis | None = None,
                 lease: float = DEFAULT_LEASE, max_hold: float | None = DEFAULT_MAX_HOLD,
                 deadlock_timeout: float = DEFAULT_DEADLOCK_TIMEOUT, prefix: str | None = None):
        if not isinstance(max_concurrent_locks, int) or isinstance(max_concurrent_locks, bool) \
                or max_concurrent_locks < 1:
            raise ValueError(f"max_concurrent_locks must be a positive int, got {max_concurrent_locks!r}")
        _require_seconds("default_timeout", default_timeout, allow_zero=True)
        _require_seconds("lease", lease)
        _require_seconds("deadlock_timeout", deadlock_timeout)
        if max_hold is not None:
            _require_seconds("max_hold", max_hold)
        self.max_concurrent_locks = max_concurrent_locks
        self.default_timeout = float(default_timeout)
        self.enable_deadlock_detection = bool(enable_deadlock_detection)
        self.cleanup_interval = cleanup_interval  # kept for the seed's signature; leases replace sweeps
        self.lease = float(lease)
        self.max_hold = max_hold
        self.deadlock_timeout = float(deadlock_timeout)

        self.connection = get_connection(redis_url=redis_url, connection=connection)
        self.keys = Keys(prefix)
        self._scripts = ScriptSet(self.connection)
        self._resources: dict[str, Any] = {}
        self._held: dict[str, _Held] = {}
        self._slots_used = 0
        self._metrics = ResourceMetrics()
        self._guard = threading.Lock()
        self._closed = False
        self._keeper = LeaseKeeper(self._scripts, self.lease, max_hold, self._lease_lost)
        # The hot path: these two scripts, on a lane of connections of their own.
        self._lane = ScriptLane(self.connection)
        self._acquire_script = self._scripts.lock_acquire
        self._release_script = self._scripts.lock_release
        self._lease_ms = int(self.lease * 1000)
        self._global_keys = (self.keys.resource_registry, self.keys.lock_index, self.keys.lock_waitfor)
        self._max_block = _block_cap(self.connection)

    # --- registration ----------------------------------------------------------------
    def register_resource(self, resource_id: str, resource: Any, resource_type: ResourceType) -> None:
        """Record the id and type cluster-wide; keep ``resource`` in this process.

        Registering an id that already exists with the same type adopts it (any process,
        any coordinator: this process's object becomes ``resource``, locks held on it stay
        as they are); a different type raises ValueError naming both.
        """
        self._check_open()
        _require_id("resource_id", resource_id)
        kind = parse_resource_type(resource_type)
        if not self.connection.hsetnx(self.keys.resource_registry, resource_id, kind.value):
            existing = self.connection.hget(self.keys.resource_registry, resource_id)
            if _type_of(existing) is not kind:
                raise ValueError(f"resource {resource_id!r} is already registered as type "
                                 f"{_s(existing) if existing is not None else 'unknown'!r}, not "
                                 f"{kind.value!r}; unregister it first to change its type")
        self._resources[resource_id] = resource

    def attach_resource(self, resource_id: str, resource: Any) -> None:
        """Give this process's object for a resource another process registered."""
        if not self.connection.hexists(self.keys.resource_registry, resource_id):
            raise UnknownResourceError(f"resource {resource_id!r} is not registered")
        self._resources[resource_id] = resource

    def unregister_resource(self, resource_id: str) -> None:
        """KeyError if unknown; ResourceBusyError while it is held or waited for."""
        outcome = _s(self._scripts.lock_unregister(
            keys=[self.keys.resource_base(resource_id), self.keys.resource_registry,
                  self.keys.lock_index, self.keys.lock_waitfor],
            args=[resource_id]))
        if outcome == "unknown":
            raise UnknownResourceError(f"resource {resource_id!r} is not registered")
        if outcome == "busy":
            raise ResourceBusyError(f"resource {resource_id!r} is still locked or waited for")
        self._resources.pop(resource_id, None)

    # --- the seed's views (read from Redis, or this process's own objects) ---------------
    @property
    def resources(self) -> dict[str, Any]:
        """resource id -> this process's object, for every registered resource (None where
        the object lives in another process)."""
        return {rid: self._resources.get(rid) for rid in self.registered_resources()}

    @property
    def resource_types(self) -> dict[str, ResourceType | None]:
        """resource id -> ResourceType, as registered cluster-wide."""
        return {rid: _type_of(kind) for rid, kind in self.registered_resources().items()}

    @property
    def active_locks(self) -> dict[str, ResourceLock]:
        """lock id -> ResourceLock for the locks this coordinator holds now."""
        with self._guard:
            return {lock_id: dataclasses.replace(h.lock) for lock_id, h in self._held.items()}

    # --- acquiring one resource --------------------------------------------------------
    def acquire_resource(self, resource_id: str, access_mode: AccessMode, holder_id: str,
                         timeout: float | None = None, *, reentrant: bool = False) -> str | None:
        """A lock id, or None when not granted within ``timeout`` (0: try once).

        Raises UnknownResourceError (a KeyError) for an unregistered id, LockLimitError
        when this coordinator already holds ``max_concurrent_locks`` locks, and
        DeadlockError when this request was chosen to break a wait-for cycle.
        ``reentrant=True`` returns the lock this coordinator already holds for the same
        holder on the resource (counting re-entries) if its mode covers the request.
        """
        mode = access_mode if type(access_mode) is AccessMode else parse_access_mode(access_mode)
        if type(holder_id) is not str or not holder_id or len(holder_id) > 200:
            _require_id("holder_id", holder_id, check_chars=False)
        wait = self.default_timeout if timeout is None else self._wait_seconds(timeout)
        self._check_open()
        if reentrant:
            lock_id = self._reenter(resource_id, mode, holder_id)
            if lock_id is not None:
                return lock_id
        self._take_slots(1, count_request=True)
        granted = False
        try:
            started = time.monotonic()
            lock_id, fence, kind = self._acquire_one(resource_id, mode, holder_id, wait)
            if lock_id is None:
                self._count("timeout_count", "failed_acquisitions")
                return None
            self._record(lock_id, resource_id, mode, holder_id, fence, time.monotonic() - started, kind)
            granted = True
            return lock_id
        except DeadlockError:
            self._count("failed_acquisitions", "deadlocks_detected")
            raise
        except BaseException:
            self._count("failed_acquisitions")
            raise
        finally:
            if not granted:
                self._give_slots(1)

    @contextmanager
    def acquire_context(self, resource_id: str, access_mode: AccessMode, holder_id: str,
                        timeout: float | None = None, *, reentrant: bool = False) -> Iterator[Any]:
        """Hold a lock for the ``with`` block and yield this process's resource object.

        The object is the one given to :meth:`register_resource` or
        :meth:`attach_resource` in this process, or None if this process has none
        (the resource then lives elsewhere, e.g. a Redis-backed memory reached by id).
        Raises ResourceAcquireTimeout (a LockTimeoutError and RuntimeError) on timeout.
        The lock is released however the block exits.
        """
        lock_id = self.acquire_resource(resource_id, access_mode, holder_id, timeout, reentrant=reentrant)
        if lock_id is None:
            raise ResourceAcquireTimeout(
                f"{parse_access_mode(access_mode).name} lock on {resource_id!r} for {holder_id!r} "
                f"not granted within {self._wait_seconds(timeout)}s")
        try:
            yield self._resources.get(resource_id)
        finally:
            self.release_resource(lock_id)

    def release_resource(self, lock_id: str) -> bool:
        """Release a lock (from this or any process). False if it was not held: unknown,
        already released, or lost because its lease lapsed."""
        if not isinstance(lock_id, str) or not lock_id:
            return False
        with self._guard:
            held = self._held.get(lock_id)
            if held is not None and held.lock.lock_count > 1:
                held.lock.lock_count -= 1
                return True
        if held is not None:
            released = bool(self._eval(self._release_script,
                                       (held.base, self._global_keys[1], self._global_keys[2]), (lock_id,)))
        else:
            released = release_lock(self.connection, self.keys, lock_id, self._scripts)
        self._drop_local(lock_id)
        return released

    # --- several resources at once --------------------------------------------------
    def acquire_many(self, requests: Iterable[tuple[str, AccessMode]], holder_id: str,
                     timeout: float | None = None) -> list[str] | None:
        """Lock ids for every (resource_id, mode), in request order, or None on timeout.

        All are granted in one atomic step or none is, and nothing is held while
        waiting, so acquire_many cannot take part in a deadlock.
        """
        pairs = [(rid, parse_access_mode(mode)) for rid, mode in requests]
        if not pairs:
            raise ValueError("acquire_many needs at least one (resource_id, access_mode)")
        ids = [rid for rid, _ in pairs]
        for rid in ids:
            _require_id("resource_id", rid)
        if len(set(ids)) != len(ids):
            raise ValueError(f"acquire_many got a resource more than once: {ids}")
        _require_id("holder_id", holder_id, check_chars=False)
        wait = self._wait_seconds(timeout)
        self._check_open()
        self._count("total_requests")
        self._take_slots(len(pairs))
        granted = False
        try:
            started = time.monotonic()
            fences = self._acquire_all(pairs, holder_id, wait)
            if fences is None:
                self._count("timeout_count", "failed_acquisitions")
                return None
            waited = time.monotonic() - started
            for (rid, mode), (lock_id, fence) in zip(pairs, fences):
                self._record(lock_id, rid, mode, holder_id, fence, waited)
            granted = True
            return [lock_id for lock_id, _ in fences]
        except BaseException:
            if not granted:
                self._count("failed_acquisitions")
            raise
        finally:
            if not granted:
                self._give_slots(len(pairs))

    @contextmanager
    def acquire_many_context(self, requests: Iterable[tuple[str, AccessMode]], holder_id: str,
                             timeout: float | None = None) -> Iterator[list[Any]]:
        pairs = list(requests)
        lock_ids = self.acquire_many(pairs, holder_id, timeout)
        if lock_ids is None:
            raise ResourceAcquireTimeout(
                f"locks on {[rid for rid, _ in pairs]} for {holder_id!r} not granted "
                f"within {self._wait_seconds(timeout)}s")
        try:
            yield [self._resources.get(rid) for rid, _ in pairs]
        finally:
            for lock_id in lock_ids:
                self.release_resource(lock_id)

    # --- status --------------------------------------------------------------------
    def get_resource_status(self, resource_id: str) -> dict:
        kind = self.connection.hget(self.keys.resource_registry, resource_id)
        if kind is None:
            raise UnknownResourceError(f"resource {resource_id!r} is not registered")
        status = resource_status(self.connection, self.keys, resource_id, _s(kind))
        status["local_object"] = resource_id in self._resources
        return status

    def get_coordinator_metrics(self) -> ResourceMetrics:
        with self._guard:
            return dataclasses.replace(self._metrics)

    def get_held_locks(self) -> list[ResourceLock]:
        """The locks this coordinator holds now."""
        with self._guard:
            return [dataclasses.replace(h.lock) for h in self._held.values()]

    def get_system_status(self) -> dict:
        resources = all_resource_status(self.connection, self.keys)
        with self._guard:
            local = len(self._held)
            metrics = self._metrics.as_dict()
        return {
            "registered_resources": len(resources),
            "active_locks": sum(r["active_locks"] for r in resources),
            "pending_requests": sum(r["waiting_requests"] for r in resources),
            "lock_holders": sorted({lk["holder"] for r in resources for lk in r["locks"]}),
            "total_wait_queues": sum(1 for r in resources if r["waiting_requests"]),
            "max_concurrent_locks": self.max_concurrent_locks,
            "deadlock_detection_enabled": self.enable_deadlock_detection,
            "local_locks": local,
            "lease_seconds": self.lease,
            "metrics": metrics,
        }

    def registered_resources(self) -> dict[str, str]:
        return registered_resources(self.connection, self.keys)

    def shutdown(self) -> None:
        """Release every lock this coordinator holds and stop renewing. Idempotent."""
        with self._guard:
            if self._closed:
                return
            self._closed = True
            lock_ids = list(self._held)
        for lock_id in lock_ids:
            with self._guard:
                held = self._held.get(lock_id)
                if held is not None:
                    held.lock.lock_count = 1
            try:
                self.release_resource(lock_id)
            except redis.RedisError as exc:
                log.warning("could not release %s at shutdown (its lease will lapse): %s", lock_id, exc)
        self._keeper.stop()
        self._lane.close()

    def __enter__(self) -> "ResourceCoordinator":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    # --- internals: one resource -------------------------------------------------------
    def _acquire_one(self, resource_id: str, mode: AccessMode, holder_id: str,
                     wait: float) -> tuple[str | None, int, str | None]:
        """(lock id, fence, resource type) when granted, else (None, 0, None)."""
        _require_id("resource_id", resource_id)
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
        status = _s(status)
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

    def _eval(self, script, keys: tuple, args: tuple):
        """Run a registered script in one round trip (see lane.py)."""
        return self._lane.run(script, keys, args)

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
                message = _s(item[1])
                if message.startswith("g:"):
                    return int(message[2:])
                if message.startswith("d:"):
                    return self._abort_as_victim(wait_keys, lock_id, json.loads(message[2:]))
                continue
            # A request past its own deadline just times out: it is no deadlock victim.
            if check_deadlock_at is not None and check_deadlock_at <= time.monotonic() < deadline:
                report = _s(self._scripts.lock_deadlock(keys=[self.keys.lock_waitfor], args=[owner, DEADLOCK_SEARCH_BUDGET]))
                if report:
                    found = json.loads(report)
                    if found["victim"] == lock_id:
                        return self._abort_as_victim(wait_keys, lock_id, found)
                # A cycle that forms later is found by its own youngest waiter; look
                # again only at lease wake-ups, which come anyway.
                check_deadlock_at = time.monotonic() + max(self.deadlock_timeout, self.lease)
            reply = self._scripts.lock_check_wait(keys=wait_keys, args=[lock_id])
            status = _s(reply[0])
            if status == "granted":
                return int(reply[1])
            if status == "queued":
                wake_ms = int(reply[1])
                continue
            # Our own place lapsed (this process stalled past its lease): queue again.
            self.connection.delete(mailbox)
            reply = self._scripts.lock_acquire(keys=lock_keys, args=acquire_args)
            status = _s(reply[0])
            if status == "unknown":
                raise UnknownResourceError(f"resource {resource_id!r} is not registered")
            if status == "granted":
                return int(reply[1])
            wake_ms = int(reply[1])

    def _withdraw(self, wait_keys, lock_id) -> int | None:
        reply = self._scripts.lock_cancel_wait(keys=wait_keys, args=[lock_id])
        return int(reply[1]) if _s(reply[0]) == "granted" else None

    def _abort_as_victim(self, wait_keys, lock_id, report: dict) -> int | None:
        fence = self._withdraw(wait_keys, lock_id)
        if fence is not None:
            return fence  # granted meanwhile: the cycle is already broken
        raise DeadlockError(_describe_cycle(report["cycle"], lock_id))

    # --- internals: many resources -------------------------------------------------------
    def _acquire_all(self, pairs, holder_id: str, wait: float) -> list[tuple[str, int]] | None:
        owner = current_owner()
        lock_ids = [f"lk-{uuid.uuid4().hex}" for _ in pairs]
        mailbox = self.keys.resource_mailbox(pairs[0][0], f"many-{uuid.uuid4().hex}")
        keys = [self.keys.resource_registry, self.keys.lock_index, self.keys.lock_waitfor]
        keys += [self.keys.resource_base(rid) for rid, _ in pairs]
        triples: list[str] = []
        for (rid, mode), lock_id in zip(pairs, lock_ids):
            triples += [rid, lock_id, mode.value]
        lease_ms = int(self.lease * 1000)
        deadline = time.monotonic() + wait
        contended = False
        settled = False  # granted, or the last try ("try") withdrew the registrations
        try:
            while True:
                how = "watch" if time.monotonic() < deadline else "try"
                reply = self._scripts.lock_acquire_many(
                    keys=keys, args=[owner, holder_id, lease_ms, mailbox, how] + triples)
                status = _s(reply[0])
                if status == "unknown":
                    settled = True
                    raise UnknownResourceError(f"resource {_s(reply[1])!r} is not registered")
                if status == "granted":
                    settled = True
                    return list(zip(lock_ids, (int(f) for f in reply[1:])))
                if not contended:
                    contended = True
                    self._count("contention_count")
                if how == "try":
                    settled = True
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    continue  # a last try, which also withdraws the registrations
                wake_ms = int(reply[1])
                block = min(remaining, self._max_block, wake_ms / 1000.0 if wake_ms >= 0 else _MAX_BLOCK)
                self.connection.blpop([mailbox], timeout=max(block, 0.005))
        finally:
            if not settled:
                # Interrupted while registered: withdraw, and pass on a turn we were given,
                # so the watchers behind us are not left waiting for a timer.
                try:
                    self._scripts.lock_acquire_many(keys=keys, args=[owner, holder_id, lease_ms, mailbox, "leave"] + triples)
                except redis.RedisError:
                    log.warning("could not withdraw acquire_many watch %s (a turn may wait for a lease wake-up)", mailbox)
            self.connection.delete(mailbox)

    # --- internals: bookkeeping ----------------------------------------------------------
    def _record(self, lock_id, resource_id, mode: AccessMode, holder_id, fence, waited: float,
                kind=_UNSET) -> None:
        now = time.time()
        kind = self._resource_type(resource_id) if kind is _UNSET else _type_of(kind)
        lock = ResourceLock(resource_id, kind, mode, holder_id, now, now + self.lease, 1, lock_id, fence)
        base = self.keys.resource_base(resource_id)
        with self._guard:
            self._held[lock_id] = _Held(lock, base)
            m = self._metrics
            m.successful_acquisitions += 1
            m._total_wait += waited
            m.average_wait_time = m._total_wait / m.successful_acquisitions
            if len(self._held) > m.peak_concurrent_locks:
                m.peak_concurrent_locks = len(self._held)
        self._keeper.track(lock_id, base, "lock")
        if mode is not AccessMode.READ:
            fencing._remember(resource_id, lock_id, self.keys.resource_fence(resource_id), fence)

    def _resource_type(self, resource_id: str) -> ResourceType | None:
        return _type_of(self.connection.hget(self.keys.resource_registry, resource_id))

    def _reenter(self, resource_id, mode: AccessMode, holder_id) -> str | None:
        rank = {AccessMode.READ: 0, AccessMode.WRITE: 1, AccessMode.EXCLUSIVE: 2}
        with self._guard:
            for lock_id, held in self._held.items():
                lock = held.lock
                if lock.resource_id == resource_id and lock.holder_id == holder_id \
                        and rank[lock.access_mode] >= rank[mode]:
                    lock.lock_count += 1
                    self._metrics.total_requests += 1
                    self._metrics.successful_acquisitions += 1
                    return lock_id
        return None

    def _drop_local(self, lock_id: str) -> None:
        with self._guard:
            held = self._held.pop(lock_id, None)
            if held is not None:
                self._slots_used -= 1
        self._keeper.untrack(lock_id)
        fencing._forget(lock_id)

    def _lease_lost(self, lock_id: str) -> None:
        # Keep the local record (and fence): the holder learns at its next fenced write.
        with self._guard:
            self._metrics.locks_lost += 1
        log.warning("lease of lock %s lapsed; its fenced writes will be refused", lock_id)

    def _take_slots(self, n: int, count_request: bool = False) -> None:
        with self._guard:
            if count_request:
                self._metrics.total_requests += 1
            if self._slots_used + n > self.max_concurrent_locks:
                raise LockLimitError(
                    f"this coordinator holds {self._slots_used} of max_concurrent_locks="
                    f"{self.max_concurrent_locks} locks; release some or raise the limit")
            self._slots_used += n

    def _give_slots(self, n: int) -> None:
        with self._guard:
            self._slots_used -= n

    def _count(self, *fields: str) -> None:
        with self._guard:
            for name in fields:
                setattr(self._metrics, name, getattr(self._metrics, name) + 1)

    def _wait_seconds(self, timeout) -> float:
        if timeout is None:
            return self.default_timeout
        _require_seconds("timeout", timeout, allow_zero=True)
        return float(timeout)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("ResourceCoordinator was shut down")


def _block_cap(connection: redis.Redis) -> float:
    """Longest BLPOP for this client: under _MAX_BLOCK and a second under its socket
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
        return _MAX_BLOCK  # None: reads wait as long as they must
    return max(min(_MAX_BLOCK, timeout - 1.0), min(timeout / 2, 0.5), 0.01)


def _describe_cycle(cycle: list[dict], victim: str) -> str:
    steps = " -> ".join(f"{c['holder']!r} waits for {c['resource']!r} ({c['mode']})" for c in cycle)
    chosen = next((c for c in cycle if c["waiter"] == victim), cycle[-1])
    return (f"deadlock: {steps} -> back to {cycle[0]['holder']!r}; aborted the youngest waiter "
            f"{chosen['holder']!r} on {chosen['resource']!r}")


def _s(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _require_seconds(name: str, value, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    if not ok or value < 0 or (value == 0 and not allow_zero) or value == float("inf"):
        need = "a number >= 0" if allow_zero else "a number > 0"
        raise ValueError(f"{name} must be {need} (seconds), got {value!r}")


def _require_id(name: str, value, check_chars: bool = True) -> None:
    if not isinstance(value, str) or not value or len(value) > 200:
        raise ValueError(f"{name} must be a non-empty string of at most 200 characters, got {value!r}")
    if check_chars and _FORBIDDEN_ID_RE.search(value):
        raise ValueError(f"{name} {value!r} may not contain braces or whitespace")
