"""ChangeDispatcher: follows one agent's change log for one process.

The change log (a Redis stream, one entry per applied change, in version order) is the
only source of notifications; the PUBLISH the scripts send is a wake-up for outside
listeners. Here a background thread blocks on XREAD, so it wakes as soon as an entry
is appended, and then:

- keeps the user's local object in step (``agent_state.emotional_state['happiness']``
  shows what other processes applied), from an in-memory cursor;
- calls ``on_state_change(changes)`` of subscribed modules with the entries on their
  paths, then stores that module's cursor in Redis. A module that comes back (same
  module id, any process) resumes after its stored cursor: it catches up on what it
  missed, in order.

Delivery is exactly once while a process lives and across orderly restarts; a process
killed after a callback returned but before its cursor was stored gets that last
batch again (each StateChange carries ``version`` for such de-duplication).
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Optional

import redis

from .store import LogEntry, StateStore, stream_order
from .tree import paths_overlap, write_into_object

READ_CHUNK = 500
WAIT_MS = 250  # also bounds how long stop() waits for the thread

logger = logging.getLogger("piano_dist.state")


class ChangeDispatcher:
    def __init__(self, store: StateStore, module_lookup: Callable[[str], Any]):
        self.store = store
        self._lookup = module_lookup
        self._target: Any = None
        self._mirror_cursor = "0-0"
        self._mirror_lock = threading.Lock()
        self._deliver_lock = threading.Lock()
        self._subs_lock = threading.Lock()
        self._subscriptions: dict[str, set[str]] = {}
        self._cursors: dict[str, str] = {}
        self._tail = "0-0"
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # --- configuration -------------------------------------------------------------
    def mirror_into(self, target: Any, cursor: str) -> None:
        with self._mirror_lock:
            self._target = target
            self._mirror_cursor = cursor
            self._advance_tail(cursor)
        self.start()

    def subscribe(self, module_id: str, path: str) -> None:
        with self._subs_lock:
            if module_id not in self._cursors:
                self._cursors[module_id] = self.store.init_cursor(module_id, self.store.last_log_id())
            self._subscriptions.setdefault(module_id, set()).add(path)
        self.start()

    def unsubscribe(self, module_id: str, path: Optional[str] = None) -> None:
        with self._subs_lock:
            paths = self._subscriptions.get(module_id)
            if paths is None:
                return
            if path is None:
                paths.clear()
            else:
                paths.discard(path)
            if not paths:
                del self._subscriptions[module_id]
                self._cursors.pop(module_id, None)

    @property
    def mirror_cursor(self) -> str:
        """Id of the last logged change written into the local object."""
        return self._mirror_cursor

    def subscriptions(self) -> dict[str, set[str]]:
        with self._subs_lock:
            return {m: set(p) for m, p in self._subscriptions.items()}

    # --- work ----------------------------------------------------------------------
    def _advance_tail(self, log_id: str) -> None:
        if stream_order(log_id) > stream_order(self._tail):
            self._tail = log_id

    def sync_mirror(self) -> None:
        """Apply every logged change after the mirror cursor to the local object."""
        if self._target is None:
            return
        with self._mirror_lock:
            while True:
                entries = self.store.read_log(self._mirror_cursor, READ_CHUNK)
                if not entries:
                    return
                for entry in entries:
                    write_into_object(self._target, entry.change.path, entry.new)
                self._mirror_cursor = entries[-1].log_id
                self._advance_tail(self._mirror_cursor)

    def deliver(self, blocking: bool = False) -> None:
        """Hand logged changes to subscribed modules. Non-blocking callers leave the
        work to whoever is delivering (that loop reads until the log is exhausted)."""
        if not self._deliver_lock.acquire(blocking=blocking):
            return
        try:
            while self._deliver_once():
                pass
        finally:
            self._deliver_lock.release()

    def _deliver_once(self) -> bool:
        with self._subs_lock:
            subs = {m: set(p) for m, p in self._subscriptions.items()}
            cursors = dict(self._cursors)
        if not subs:
            return False
        start = min((cursors[m] for m in subs), key=stream_order)
        entries = self.store.read_log(start, READ_CHUNK)
        if not entries:
            return False
        last = entries[-1].log_id
        self._advance_tail(last)
        for module_id, paths in subs.items():
            cursor = stream_order(cursors[module_id])
            batch = [e.change for e in entries if e.order > cursor and _matches(e, paths)]
            if batch:
                self._call(module_id, batch)
            if stream_order(last) > cursor:
                with self._subs_lock:
                    if module_id in self._cursors:
                        self._cursors[module_id] = last
                self.store.set_cursors({module_id: last})
        return True

    def _call(self, module_id: str, changes: list) -> None:
        module = self._lookup(module_id)
        handler = getattr(module, "on_state_change", None) if module is not None else None
        if handler is None:
            return
        try:
            handler(changes)
        except Exception:  # one module's bug must not stop delivery to the others
            logger.exception("on_state_change of module %r failed on %d change(s)", module_id, len(changes))

    # --- background thread -----------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None or self._stop.is_set():
            return
        self._thread = threading.Thread(target=self._run, name=f"piano-state-{self.store.agent_id}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync_mirror()
                self.deliver(blocking=True)
                if self._target is None and not self._subscriptions:
                    self._advance_tail(self.store.last_log_id())  # nothing to follow: just idle
                self.store.wait_for_log(self._tail, WAIT_MS)
            except redis.RedisError as exc:
                logger.warning("state change feed for agent %r interrupted (%s); retrying",
                               self.store.agent_id, exc)
                self._stop.wait(0.5)
            except Exception:
                logger.exception("state change feed for agent %r failed; retrying", self.store.agent_id)
                self._stop.wait(0.5)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)


def _matches(entry: LogEntry, paths: set[str]) -> bool:
    return any(paths_overlap(entry.change.path, p) for p in paths)
