"""Tally: counter increments gathered in memory and sent to Redis together.

Bookkeeping that only adds (the model-call gauge and counters, the accounting hashes)
need not cost a round trip each: increments to the same counter are summed, and what has
gathered is sent in one pipeline by whichever comes first — a worker's finisher, which
carries it ahead of the outcomes it records (so a task's bookkeeping is in Redis before
its end is), a caller that needs it written now (``flush``), or this module's own thread,
``delay`` seconds after the first increment. One Tally per connection pool per process.

A tally is bookkeeping, not data: increments that cannot be sent are logged and dropped,
as a lost step of a gauge would be; a pipeline the retry policy repeats after a lost
reply may count twice.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from typing import Any

import redis

from .log_limit import LogLimiter

log = logging.getLogger("piano_dist.tally")

DEFAULT_DELAY = 0.02  # seconds an increment may wait for others to share its round trip


class Tally:
    def __init__(self, connection: redis.Redis, delay: float | None = None):
        self.connection = connection
        self.delay = DEFAULT_DELAY if delay is None else delay
        self._counters: dict[tuple[str, str | None], int | float] = {}
        self._members: dict[str, set] = {}
        self._changed = threading.Condition()
        # Held while increments taken from the tally are on their way: whoever takes next
        # (the finisher) then sends after them, never before.
        self._sending = threading.Lock()
        self._thread: threading.Thread | None = None
        self._log_limit = LogLimiter(per_key=10.0)

    # --- gathering ------------------------------------------------------------------
    def incr(self, key: str, amount: int | float, field: str | None = None) -> None:
        """Add ``amount`` to string counter ``key``, or to hash field ``field`` of ``key``."""
        if amount:
            self.incr_fields(key, {field: amount})

    def incr_fields(self, key: str, amounts: dict[str | None, int | float]) -> None:
        """Add each amount to its field of hash ``key`` (field None: ``key`` is a string
        counter), under one lock: the accounting adds a dozen fields to each of four
        hashes per call."""
        with self._changed:
            counters = self._counters
            for field, amount in amounts.items():
                if amount:
                    slot = (key, field)
                    counters[slot] = counters.get(slot, 0) + amount
            self._wake()

    def sadd(self, key: str, *members: str) -> None:
        if not members:
            return
        with self._changed:
            self._members.setdefault(key, set()).update(members)
            self._wake()

    def _wake(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="piano-tally", daemon=True)
            self._thread.start()
        self._changed.notify()

    @property
    def pending(self) -> bool:
        return bool(self._counters or self._members)

    # --- sending --------------------------------------------------------------------
    def _take(self) -> tuple[dict, dict]:
        with self._changed:
            counters, members = self._counters, self._members
            self._counters, self._members = {}, {}
        return counters, members

    @staticmethod
    def _queue(pipe: Any, counters: dict, members: dict) -> int:
        """Queue the commands for what was taken; how many were queued."""
        queued = 0
        for key, values in members.items():
            pipe.sadd(key, *sorted(values))
            queued += 1
        for (key, field), amount in counters.items():
            if isinstance(amount, float):
                amount = round(amount, 9)
                if not amount:
                    continue
                pipe.incrbyfloat(key, amount) if field is None else pipe.hincrbyfloat(key, field, amount)
            elif amount:
                pipe.incrby(key, amount) if field is None else pipe.hincrby(key, field, amount)
            else:
                continue
            queued += 1
        return queued

    def carry(self) -> "Carried":
        """Take everything gathered so far, for a caller's own pipeline (``Carried.queue``)."""
        with self._sending:  # an increment already on its way arrives first
            return Carried(*self._take())

    def flush(self) -> None:
        """Send what has gathered now, in one round trip."""
        with self._sending:
            counters, members = self._take()
            if not counters and not members:
                return
            try:
                with self.connection.pipeline(transaction=False) as pipe:
                    if self._queue(pipe, counters, members):
                        pipe.execute(raise_on_error=False)
            except redis.RedisError as exc:
                self._warn(f"{len(counters) + len(members)} counter update(s) not recorded ({exc})")

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self.pending:
                    self._changed.wait()
            time.sleep(self.delay)  # let the other slots' increments join this round trip
            self.flush()

    def _warn(self, message: str) -> None:
        allowed, held_back = self._log_limit.allow("unsent")
        if allowed:
            log.warning("%s%s", message, f"; {held_back} similar line(s) held back" if held_back else "")


class Carried:
    """Increments taken from a tally to ride in another pipeline."""

    def __init__(self, counters: dict, members: dict):
        self.counters, self.members = counters, members

    def queue(self, pipe: Any) -> int:
        """Queue them on ``pipe`` (again, if a try of that pipeline failed); how many
        commands were queued, whose replies the caller skips."""
        return Tally._queue(pipe, self.counters, self.members)


_tallies: "weakref.WeakKeyDictionary[Any, Tally]" = weakref.WeakKeyDictionary()
_guard = threading.Lock()


def tally_for(connection: redis.Redis) -> Tally:
    """This process's tally for the connection's pool (one per pool: the finisher that
    carries it writes to the same server)."""
    pool = connection.connection_pool
    with _guard:
        tally = _tallies.get(pool)
        if tally is None:
            tally = _tallies[pool] = Tally(connection)
        return tally


def _forget_after_fork() -> None:
    # The parent's increments are the parent's to send; its threads did not come along.
    global _guard
    _guard = threading.Lock()
    _tallies.clear()


def _flush_all() -> None:
    for tally in list(_tallies.values()):
        if tally.pending:
            tally.flush()


os.register_at_fork(after_in_child=_forget_after_fork)
atexit.register(_flush_all)
