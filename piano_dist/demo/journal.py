"""RunJournal: how each of the run's tasks ended, as its "finished" event told.

The demo keeps no task records once its tasks end (a TTL of 0: nothing reads a tick's
record once its dependents are released), so the report and the timeline are built from
the events instead: every way a task ends PUBLISHes its status, times, worker and model
figures on ``<prefix>:events`` (includes/task_common.lua, set_terminal). Collecting them
here costs Redis no memory.

Pub/sub drops what a subscriber misses while it is away. A task the journal missed is
looked up in Redis afterwards (its record, if one is kept); its status is still counted
from the run's group counters, which do not depend on the events.
"""
from __future__ import annotations

import json
import logging
import math
import threading
from typing import Any

import redis

from ..core.listing import epoch_of

log = logging.getLogger(__name__)

# Statuses a task ends in (TaskStatus.is_terminal).
ENDED = frozenset(("completed", "failed", "timed_out", "cancelled", "dependency_failed"))


def ended_status(message: Any, task_ids: frozenset[str] | set[str]) -> tuple[str, dict] | None:
    """(task id, status dict shaped like Client.get_statuses') from one raw event, or None
    unless it is a well-formed "finished" event of one of ``task_ids``. Anyone who can
    write to Redis can publish on the channel: every field is checked."""
    try:
        event = json.loads(message)
    except (TypeError, ValueError):
        return None
    if not isinstance(event, dict) or event.get("e") != "finished":
        return None
    task_id, status = event.get("id"), event.get("status")
    if not isinstance(task_id, str) or task_id not in task_ids or not isinstance(status, str) or status not in ENDED:
        return None
    ended_ms = _finite(event.get("ended_ms"))
    started = event.get("started_at")
    worker, module = event.get("worker"), event.get("module")
    entry = {"task_id": task_id, "status": status,
             "module": module if isinstance(module, str) else None,
             "started_at": epoch_of(started.encode("utf-8", "replace")) if isinstance(started, str) else None,
             "ended_at": ended_ms / 1000 if ended_ms is not None else None,
             "worker": worker if isinstance(worker, str) else None}
    model_ms = _finite(event.get("model_ms"))
    if model_ms is not None and model_ms >= 0:
        calls = _finite(event.get("model_calls"))
        entry["model_seconds"] = model_ms / 1000
        entry["model_calls"] = int(calls) if calls is not None and calls >= 0 else 0
    return task_id, entry


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)  # an int of hundreds of digits overflows
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


class RunJournal:
    """Follows the events channel on its own connection from ``start()`` (which returns
    once subscribed, so nothing submitted after it is missed) until ``stop()``."""

    def __init__(self, connection: redis.Redis, channel: str, task_ids: list[str] | None = None):
        self.connection = connection
        self.channel = channel
        self.task_ids: frozenset[str] = frozenset(task_ids or ())
        self.statuses: dict[str, dict] = {}
        self.gaps = 0  # times the subscription was lost and made again (events may be missing)
        self.malformed = 0  # events that could not be read (anyone can publish on the channel)
        self._lock = threading.Lock()
        self._grew = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._thread: threading.Thread | None = None

    def expect(self, task_ids: list[str]) -> None:
        """The tasks to account for (call before submitting them)."""
        with self._lock:
            self.task_ids = self.task_ids | frozenset(task_ids)

    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._follow, name="piano-demo-journal", daemon=True)
        self._thread.start()
        if not self._subscribed.wait(timeout):
            self.stop()
            raise RuntimeError(f"could not subscribe to {self.channel} within {timeout:g} s")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def wait_for_all(self, timeout: float) -> bool:
        """Wait until every expected task has its entry (an event published before the
        group counters said it ended may still be on its way), at most ``timeout`` s."""
        with self._grew:
            return self._grew.wait_for(lambda: len(self.statuses) >= len(self.task_ids), timeout)

    def snapshot(self) -> dict[str, dict]:
        with self._lock:
            return dict(self.statuses)

    def _take(self, raw: Any) -> None:
        try:
            found = ended_status(raw, self.task_ids)
        except Exception:  # noqa: BLE001 - one message nobody foresaw must not end the journal
            self.malformed += 1
            if self.malformed <= 3:
                log.warning("demo journal: ignoring an event it cannot read: %r", raw[:200], exc_info=True)
            return
        if found:
            with self._lock:
                self.statuses[found[0]] = found[1]
                self._grew.notify_all()

    def _follow(self) -> None:
        subscriptions = 0
        while not self._stop.is_set():
            pubsub = self.connection.pubsub()
            try:
                pubsub.subscribe(self.channel)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.2)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        subscriptions += 1
                        if subscriptions > 1:
                            self.gaps += 1
                        self._subscribed.set()
                    elif message["type"] == "message":
                        self._take(message["data"])
            except redis.RedisError as exc:
                log.warning("demo journal lost Redis (%s: %s); subscribing again", type(exc).__name__, exc)
                self._stop.wait(0.5)
            finally:
                try:
                    pubsub.close()
                except Exception:  # noqa: BLE001 - a broken connection may raise on close
                    pass
