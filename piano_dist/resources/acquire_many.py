"""Several resources at once: every lock granted in one atomic step, or none.

lock_acquire_many grants all the requested locks or registers the request as a
watcher of the busy ones, holding nothing; the caller blocks on a mailbox where a
release posts a turn, and tries again. Holding nothing while it waits, an
acquire_many cannot take part in a deadlock.
"""
from __future__ import annotations

import logging
import time
import uuid
from typing import Callable

import redis

from ..errors import UnknownResourceError
from ..keys import Keys
from ..replies import as_text
from ..scripts import ScriptSet
from .owner import current_owner
from .waiter import MAX_BLOCK, block_cap

log = logging.getLogger("piano_dist.resources")


class ManyAcquirer:
    def __init__(self, connection: redis.Redis, keys: Keys, scripts: ScriptSet, lease: float,
                 count: Callable[..., None]):
        self.connection = connection
        self.keys = keys
        self._scripts = scripts
        self.lease = lease
        self._count = count
        self._max_block = block_cap(connection)

    def acquire(self, pairs, holder_id: str, wait: float) -> list[tuple[str, int]] | None:
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
                status = as_text(reply[0])
                if status == "unknown":
                    settled = True
                    raise UnknownResourceError(f"resource {as_text(reply[1])!r} is not registered")
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
                block = min(remaining, self._max_block, wake_ms / 1000.0 if wake_ms >= 0 else MAX_BLOCK)
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
