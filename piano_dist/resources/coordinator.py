"""ResourceCoordinator: READ/WRITE/EXCLUSIVE locks on shared resources, across processes.

Every transition (grant, queue, hand-off, release, lease lapse) is one Lua script in
piano_dist/lua/lock_*.lua. The coordinator is the API over parts that each do one job:
registration.py (which resources exist, and this process's objects), waiter.py (one
resource: queueing, the mailbox wait, deadlock victims), acquire_many.py (several at
once), lease_keeper.py (renewing leases), lane.py (the hot scripts' connections),
fencing.py (tokens of held WRITE locks) and books.py (this coordinator's locks,
limit and metrics).
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

import redis

from ..arguments import is_whole
from ..connection import get_connection
from ..errors import DeadlockError, ResourceAcquireTimeout, UnknownResourceError
from ..keys import Keys
from ..replies import as_text
from ..scripts import ScriptSet
from . import fencing
from .acquire_many import ManyAcquirer
from .arguments import require_id, require_seconds
from .books import LockBooks
from .lane import ScriptLane
from .lease_keeper import LeaseKeeper
from .registration import ResourceRegistration, type_of
from .status import all_resource_status, release_lock, resource_status
from .types import AccessMode, ResourceLock, ResourceMetrics, ResourceType, parse_access_mode
from .waiter import DEADLOCK_SEARCH_BUDGET, LockWaiter  # noqa: F401  (imported from here by tests, tools)

log = logging.getLogger("piano_dist.resources")

DEFAULT_LEASE = 5.0
DEFAULT_MAX_HOLD = 600.0
DEFAULT_DEADLOCK_TIMEOUT = 0.5
_UNSET = object()


class ResourceCoordinator:
    """Locks on registered resources, shared by every process using the same Redis.

    ``max_concurrent_locks`` caps the locks held through *this* coordinator at once;
    ``default_timeout`` is how long an acquisition waits when no timeout is given
    (0 means try once). ``lease`` is how long a lock outlives its process;
    ``max_hold`` caps how long a lock is renewed (None: as long as the process lives).
    ``cleanup_interval`` is accepted for the original API and not used: leases replace
    cleanup sweeps.
    """

    def __init__(self, max_concurrent_locks: int = 50, default_timeout: float = 30.0,
                 enable_deadlock_detection: bool = True, cleanup_interval: float = 60, *,
                 redis_url: str | None = None, connection: redis.Redis | None = None,
                 lease: float = DEFAULT_LEASE, max_hold: float | None = DEFAULT_MAX_HOLD,
                 deadlock_timeout: float = DEFAULT_DEADLOCK_TIMEOUT, prefix: str | None = None):
        if not is_whole(max_concurrent_locks) or max_concurrent_locks < 1:
            raise ValueError(f"max_concurrent_locks must be a positive int, got {max_concurrent_locks!r}")
        require_seconds("default_timeout", default_timeout, allow_zero=True)
        require_seconds("lease", lease)
        require_seconds("deadlock_timeout", deadlock_timeout)
        if max_hold is not None:
            require_seconds("max_hold", max_hold)
        self.max_concurrent_locks = max_concurrent_locks
        self.default_timeout = float(default_timeout)
        self.enable_deadlock_detection = bool(enable_deadlock_detection)
        self.lease = float(lease)
        self.max_hold = max_hold
        self.deadlock_timeout = float(deadlock_timeout)

        self.connection = get_connection(redis_url=redis_url, connection=connection)
        self.keys = Keys(prefix)
        self._scripts = ScriptSet(self.connection)
        self._registration = ResourceRegistration(self.connection, self.keys, self._scripts)
        self._resources = self._registration.objects
        self._books = LockBooks(max_concurrent_locks)
        self._closed = False
        self._closing = threading.Lock()
        self._keeper = LeaseKeeper(self._scripts, self.lease, max_hold, self._lease_lost)
        # The hot path: acquire and release, on a lane of connections of their own.
        self._lane = ScriptLane(self.connection)
        self._release_script = self._scripts.lock_release
        self._waiter = LockWaiter(self.connection, self.keys, self._scripts, self._lane, self._keeper, self.lease,
                                  self.enable_deadlock_detection, self.deadlock_timeout, self._books.count,
                                  self.release_resource)
        self._many = ManyAcquirer(self.connection, self.keys, self._scripts, self.lease, self._books.count)

    # --- registration ----------------------------------------------------------------
    def register_resource(self, resource_id: str, resource: Any, resource_type: ResourceType) -> None:
        """Record the id and type cluster-wide; keep ``resource`` in this process.

        Registering an id that already exists with the same type adopts it (any process,
        any coordinator: this process's object becomes ``resource``, locks held on it stay
        as they are); a different type raises ValueError naming both.
        """
        self._check_open()
        self._registration.register(resource_id, resource, resource_type)

    def attach_resource(self, resource_id: str, resource: Any) -> None:
        """Give this process's object for a resource another process registered."""
        self._registration.attach(resource_id, resource)

    def unregister_resource(self, resource_id: str) -> None:
        """KeyError if unknown; ResourceBusyError while it is held or waited for."""
        self._registration.unregister(resource_id)

    # --- views (read from Redis, or this process's own objects) ---------------------------
    @property
    def resources(self) -> dict[str, Any]:
        """resource id -> this process's object, for every registered resource (None where
        the object lives in another process)."""
        return {rid: self._resources.get(rid) for rid in self.registered_resources()}

    @property
    def resource_types(self) -> dict[str, ResourceType | None]:
        """resource id -> ResourceType, as registered cluster-wide."""
        return {rid: type_of(kind) for rid, kind in self.registered_resources().items()}

    @property
    def active_locks(self) -> dict[str, ResourceLock]:
        """lock id -> ResourceLock for the locks this coordinator holds now."""
        return self._books.locks()

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
            require_id("holder_id", holder_id, check_chars=False)
        wait = self.default_timeout if timeout is None else self._wait_seconds(timeout)
        self._check_open()
        if reentrant:
            lock_id = self._books.reenter(resource_id, mode, holder_id)
            if lock_id is not None:
                return lock_id
        self._books.take_slots(1, count_request=True)
        granted = False
        try:
            started = time.monotonic()
            lock_id, fence, kind = self._waiter.acquire(resource_id, mode, holder_id, wait)
            if lock_id is None:
                self._books.count("timeout_count", "failed_acquisitions")
                return None
            self._record(lock_id, resource_id, mode, holder_id, fence, time.monotonic() - started, kind)
            granted = True
            return lock_id
        except DeadlockError:
            self._books.count("failed_acquisitions", "deadlocks_detected")
            raise
        except BaseException:
            self._books.count("failed_acquisitions")
            raise
        finally:
            if not granted:
                self._books.give_slots(1)

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
        held, reentered = self._books.leave(lock_id)
        if reentered:
            return True
        if held is not None:
            released = bool(self._lane.run(self._release_script,
                                           (held.base, self.keys.lock_index, self.keys.lock_waitfor), (lock_id,)))
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
            require_id("resource_id", rid)
        if len(set(ids)) != len(ids):
            raise ValueError(f"acquire_many got a resource more than once: {ids}")
        require_id("holder_id", holder_id, check_chars=False)
        wait = self._wait_seconds(timeout)
        self._check_open()
        self._books.count("total_requests")
        self._books.take_slots(len(pairs))
        granted = False
        try:
            started = time.monotonic()
            fences = self._many.acquire(pairs, holder_id, wait)
            if fences is None:
                self._books.count("timeout_count", "failed_acquisitions")
                return None
            waited = time.monotonic() - started
            for (rid, mode), (lock_id, fence) in zip(pairs, fences):
                self._record(lock_id, rid, mode, holder_id, fence, waited)
            granted = True
            return [lock_id for lock_id, _ in fences]
        except BaseException:
            if not granted:
                self._books.count("failed_acquisitions")
            raise
        finally:
            if not granted:
                self._books.give_slots(len(pairs))

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
        status = resource_status(self.connection, self.keys, resource_id, as_text(kind))
        status["local_object"] = resource_id in self._resources
        return status

    def get_coordinator_metrics(self) -> ResourceMetrics:
        return self._books.metrics()

    def get_held_locks(self) -> list[ResourceLock]:
        """The locks this coordinator holds now."""
        return list(self._books.locks().values())

    def get_system_status(self) -> dict:
        resources = all_resource_status(self.connection, self.keys)
        local = len(self._books.lock_ids())
        metrics = self._books.metrics().as_dict()
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
        return self._registration.registered()

    def shutdown(self) -> None:
        """Release every lock this coordinator holds and stop renewing. Idempotent."""
        with self._closing:
            if self._closed:
                return
            self._closed = True
        for lock_id in self._books.lock_ids():
            self._books.unwind_all(lock_id)
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

    # --- internals ----------------------------------------------------------------------
    def _record(self, lock_id, resource_id, mode: AccessMode, holder_id, fence, waited: float,
                kind=_UNSET) -> None:
        now = time.time()
        kind = self._registration.type_of(resource_id) if kind is _UNSET else type_of(kind)
        lock = ResourceLock(resource_id, kind, mode, holder_id, now, now + self.lease, 1, lock_id, fence)
        base = self.keys.resource_base(resource_id)
        self._books.record(lock, base, waited)
        self._keeper.track(lock_id, base, "lock")
        if mode is not AccessMode.READ:
            fencing._remember(resource_id, lock_id, self.keys.resource_fence(resource_id), fence)

    def _drop_local(self, lock_id: str) -> None:
        self._books.drop(lock_id)
        self._keeper.untrack(lock_id)
        fencing._forget(lock_id)

    def _lease_lost(self, lock_id: str) -> None:
        # Keep the local record (and fence): the holder learns at its next fenced write.
        self._books.count("locks_lost")
        log.warning("lease of lock %s lapsed; its fenced writes will be refused", lock_id)

    def _wait_seconds(self, timeout) -> float:
        if timeout is None:
            return self.default_timeout
        require_seconds("timeout", timeout, allow_zero=True)
        return float(timeout)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("ResourceCoordinator was shut down")
