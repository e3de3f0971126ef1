"""Task events travelling through Redis pub/sub, dispatched to local callbacks.

Every transition script PUBLISHes a small JSON message on ``<prefix>:events``. One
listener thread per process turns them into the event and task callbacks and wakes local
waiters. Pub/sub is fire-and-forget, so after a reconnect the listener asks every
waiter to re-read statuses from Redis: a wait never hangs on a lost message.
"""
from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from typing import Any, Callable

import redis

from ..keys import Keys
from .log_limit import LogLimiter

log = logging.getLogger(__name__)

# Event fields and the types a message must give them (anyone can PUBLISH on the channel).
_FIELD_TYPES = {"e": str, "id": str, "module": (str, type(None)), "status": (str, type(None)),
                "error": (str, type(None)), "worker": (str, type(None))}

EVENT_NAMES = ("module_started", "module_completed", "module_error", "task_queued",
               "task_completed", "system_overload")


class EventBus:
    def __init__(self, connection: redis.Redis, keys: Keys):
        self.connection = connection
        self.keys = keys
        self._callbacks: dict[str, list[Callable]] = defaultdict(list)
        self._task_callbacks: dict[str, Callable] = {}
        self._listeners: list[Callable[[dict], None]] = []
        self._waiters: dict[str, set[threading.Event]] = defaultdict(set)
        # How tasks someone here waits on ended, as their "finished" event said: with a
        # result TTL of 0 the record is gone by the time a waiter reads it.
        self._ended: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._bad_events = LogLimiter(per_key=60.0, burst=5, window=60.0)
        self.task_callback_resolver: Callable[[str], dict | None] | None = None

    # --- registration -----------------------------------------------------------
    def add_callback(self, event: str, fn: Callable) -> None:
        if event not in EVENT_NAMES:
            raise ValueError(f"unknown event {event!r}; events: {', '.join(EVENT_NAMES)}")
        if not callable(fn):
            raise TypeError(f"callback for {event!r} must be callable, not {type(fn).__name__}")
        with self._lock:
            self._callbacks[event].append(fn)
        self.start()

    def remove_callback(self, event: str, fn: Callable) -> bool:
        with self._lock:
            try:
                self._callbacks[event].remove(fn)
                return True
            except ValueError:
                return False

    def add_listener(self, fn: Callable[[dict], None]) -> None:
        """``fn(event)`` on the listener thread for every well-formed event, as the task
        scripts publish it (a dict: ``e`` names the transition; a ``finished`` event
        carries how the task ran). Only its own declared fields are type-checked."""
        with self._lock:
            self._listeners.append(fn)

    def remove_listener(self, fn: Callable[[dict], None]) -> None:
        with self._lock:
            if fn in self._listeners:
                self._listeners.remove(fn)

    def add_task_callback(self, task_id: str, fn: Callable) -> None:
        with self._lock:
            self._task_callbacks[task_id] = fn
        self.start()

    def add_waiter(self, task_id: str, event: threading.Event) -> None:
        with self._lock:
            self._waiters[task_id].add(event)
        self.start()

    def remove_waiter(self, task_id: str, event: threading.Event) -> None:
        with self._lock:
            waiters = self._waiters.get(task_id)
            if waiters:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[task_id]
            if task_id not in self._waiters and task_id not in self._task_callbacks:
                self._ended.pop(task_id, None)

    def ended(self, task_id: str) -> dict | None:
        """How a task waited on here ended, from its event ({status, module, error}), or None."""
        with self._lock:
            return self._ended.get(task_id)

    # --- listener ----------------------------------------------------------------
    def start(self, wait: bool = True, timeout: float = 5.0) -> bool:
        """Start the listener; with ``wait``, until subscribed (at most ``timeout`` s).
        Whether it is subscribed."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._listen, name="piano-events", daemon=True)
                self._thread.start()
        if wait:
            self._subscribed.wait(timeout=timeout)
        return self._subscribed.is_set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _listen(self) -> None:
        """Follow the events channel. The client's retry policy reconnects a dropped
        subscription and subscribes again; every (re)subscription confirmation triggers
        a resync, since messages published meanwhile are lost. If Redis stays away past
        the policy's deadline, the listener starts over, for as long as it runs."""
        while not self._stop.is_set():
            pubsub = self.connection.pubsub()
            try:
                pubsub.subscribe(self.keys.events_channel)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        self._subscribed.set()
                        self._resync()
                    elif message["type"] == "message":
                        try:
                            self._dispatch(message["data"])
                        except Exception:  # one bad message must not end the listener
                            if self._bad_events.allow("dispatch")[0]:
                                log.exception("could not dispatch event %r", message.get("data"))
            except redis.RedisError as exc:
                self._subscribed.clear()
                log.warning("event listener lost Redis (%s: %s); subscribing again", type(exc).__name__, exc)
                self._stop.wait(1.0)
            finally:
                try:
                    pubsub.close()
                except Exception:  # closing a broken connection may raise; nothing to keep
                    pass

    def _resync(self) -> None:
        """After (re)subscribing, messages may have been missed: let waiters re-check and
        settle task callbacks whose tasks already ended."""
        with self._lock:
            waiters = [e for events in self._waiters.values() for e in events]
            pending = list(self._task_callbacks)
        for event in waiters:
            event.set()
        if self.task_callback_resolver:
            for task_id in pending:
                status = self.task_callback_resolver(task_id)
                if status is not None:
                    self._fire_task_callback(task_id, status)

    @staticmethod
    def _parse(raw: Any) -> dict | None:
        """The event in ``raw``, or None unless it is a JSON object with fields of the
        types the task scripts publish."""
        try:
            message = json.loads(raw)
        except (ValueError, TypeError):
            return None
        if not isinstance(message, dict) or not isinstance(message.get("e"), str):
            return None
        if message["e"] != "overload" and not isinstance(message.get("id"), str):
            return None
        for name, kind in _FIELD_TYPES.items():
            if name in message and not isinstance(message[name], kind):
                return None
        return message

    def _dispatch(self, raw: bytes) -> None:
        message = self._parse(raw)
        if message is None:
            allowed, held_back = self._bad_events.allow("malformed")
            if allowed:
                log.warning("ignoring malformed event %r%s", raw[:200],
                            f" ({held_back} more held back)" if held_back else "")
            return
        kind, task_id = message["e"], message.get("id")
        with self._lock:
            listeners = list(self._listeners)
        for fn in listeners:
            self._call(fn, message)
        if kind == "queued":
            from .types import ModuleTask

            self.fire("task_queued", ModuleTask(task_id=task_id, module_name=message.get("module") or ""))
        elif kind == "started":
            self.fire("module_started", task_id, message.get("module"))
        elif kind == "finished":
            status = message.get("status")
            success = status == "completed"
            if success:
                self.fire("module_completed", task_id, message.get("module"))
            else:
                self.fire("module_error", task_id, message.get("module"), message.get("error"))
            self.fire("task_completed", task_id, success)
            with self._lock:
                if task_id in self._waiters or task_id in self._task_callbacks:
                    self._ended[task_id] = {"status": status, "module": message.get("module"),
                                            "error": message.get("error")}
            self._wake(task_id)
            if task_id in self._task_callbacks and self.task_callback_resolver:
                resolved = self.task_callback_resolver(task_id)
                if resolved is not None:
                    self._fire_task_callback(task_id, resolved)
        elif kind == "overload":
            self.fire("system_overload")

    def _wake(self, task_id: str) -> None:
        with self._lock:
            waiters = list(self._waiters.get(task_id, ()))
        for event in waiters:
            event.set()

    def _fire_task_callback(self, task_id: str, status: dict) -> None:
        with self._lock:
            fn = self._task_callbacks.pop(task_id, None)
            if task_id not in self._waiters:
                self._ended.pop(task_id, None)
        if fn is not None:
            self._call(fn, status)

    def fire(self, event: str, *args: Any) -> None:
        with self._lock:
            callbacks = list(self._callbacks.get(event, ()))
        for fn in callbacks:
            self._call(fn, *args)

    @staticmethod
    def _call(fn: Callable, *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("event callback %r raised", fn)

    def publish_overload(self, detail: dict) -> None:
        self.connection.publish(self.keys.events_channel, json.dumps({"e": "overload", **detail}))
