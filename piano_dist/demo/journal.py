"""RunJournal: how each of the run's tasks ended, as its "finished" event told.

The demo keeps no task records once its tasks end (a TTL of 0: nothing reads a tick's
record once its dependents are released), so the report and the timeline are built from
the events instead: every way a task ends PUBLISHes its status, times, worker and model
figures on ``<prefix>:events`` (includes/task_common.lua, set_terminal). The journal is
a listener on the client's EventBus, which follows the channel (and resubscribes after a
lost connection); collecting them costs Redis no memory.

Pub/sub drops what a subscriber misses while it is away. A task the journal missed is
looked up in Redis afterwards (its record, if one is kept); its status is still counted
from the run's group counters, which do not depend on the events.
"""
from __future__ import annotations

import math
import threading
from typing import Any

from ..core.events import EventBus
from ..core.listing import epoch_of

# Statuses a task ends in (TaskStatus.is_terminal).
ENDED = frozenset(("completed", "failed", "timed_out", "cancelled", "dependency_failed"))


def ended_status(event: Any, task_ids: frozenset[str] | set[str]) -> tuple[str, dict] | None:
    """(task id, status dict shaped like Client.get_statuses') from one event (as the
    EventBus parsed it), or None unless it is a "finished" event of one of ``task_ids``.
    Anyone who can write to Redis can publish on the channel: every field is checked."""
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
    """Listens to ``events`` from ``start()`` (which returns once it is subscribed, so
    nothing submitted after it is missed) until ``stop()``."""

    def __init__(self, events: EventBus, task_ids: list[str] | None = None):
        self.events = events
        self.task_ids: frozenset[str] = frozenset(task_ids or ())
        self.statuses: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._grew = threading.Condition(self._lock)

    def expect(self, task_ids: list[str]) -> None:
        """The tasks to account for (call before submitting them)."""
        with self._lock:
            self.task_ids = self.task_ids | frozenset(task_ids)

    def start(self, timeout: float = 10.0) -> None:
        self.events.add_listener(self._take)
        if not self.events.start(wait=True, timeout=timeout):
            self.stop()
            raise RuntimeError(f"could not subscribe to {self.events.keys.events_channel} within {timeout:g} s")

    def stop(self) -> None:
        self.events.remove_listener(self._take)

    def wait_for_all(self, timeout: float) -> bool:
        """Wait until every expected task has its entry (an event published before the
        group counters said it ended may still be on its way), at most ``timeout`` s."""
        with self._grew:
            return self._grew.wait_for(lambda: len(self.statuses) >= len(self.task_ids), timeout)

    def snapshot(self) -> dict[str, dict]:
        with self._lock:
            return dict(self.statuses)

    def _take(self, event: dict) -> None:
        found = ended_status(event, self.task_ids)
        if found:
            with self._lock:
                self.statuses[found[0]] = found[1]
                self._grew.notify_all()
