"""Tasks whose arguments are live Python objects (not JSON), kept by the submitting process.

A program may pass objects to its tasks (a coordinator, a maze, a memory
object). Such arguments cannot travel through Redis, so the task can only run where
they are: the manager that submitted it keeps them in memory, records the task in
Redis as usual (status, dependencies, cancel, events all work) with a description of
each object in their place, and queues it on a queue group of its own that only its
slots serve. Its slots put the real objects back before the call.

The arguments live as long as the process: if it ends before the task runs, the task
is cancelled at an orderly shutdown, and stays queued (unclaimable) after a crash.
"""
from __future__ import annotations

import json
import threading
import uuid
from typing import Any


def needs_process(args: Any, kwargs: Any) -> bool:
    """True when the arguments hold objects JSON cannot encode at all (as opposed to
    JSON-shaped values that break a limit, which stay errors)."""
    try:
        json.dumps([list(args or ()), dict(kwargs or {})], allow_nan=True)
    except TypeError:
        return True
    except ValueError:
        return False
    return False


def _describe(value: Any) -> Any:
    """A JSON stand-in for what Redis shows: JSON values as they are, objects by type."""
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError):
        pass
    if isinstance(value, (list, tuple)):
        return [_describe(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _describe(v) for k, v in value.items()}
    return f"<in-process {type(value).__name__}>"


class InProcessArguments:
    """The arguments of this process's pinned tasks, by task id."""

    def __init__(self) -> None:
        self.queue_group = f"local-{uuid.uuid4().hex[:12]}"
        self._held: dict[str, tuple[tuple, dict]] = {}
        self._lock = threading.Lock()

    def keep(self, task_id: str, args: Any, kwargs: Any) -> tuple[tuple, dict]:
        """Hold the real arguments; return the JSON stand-ins to submit."""
        args, kwargs = tuple(args or ()), dict(kwargs or {})
        with self._lock:
            self._held[task_id] = (args, kwargs)
        return tuple(_describe(a) for a in args), {k: _describe(v) for k, v in kwargs.items()}

    def resolve(self, task: Any) -> tuple[list, dict] | None:
        """The real arguments of a claimed task (an engine ClaimedTask), if held here."""
        with self._lock:
            held = self._held.get(task.task_id)
        return (list(held[0]), dict(held[1])) if held is not None else None

    def discard(self, task_id: str) -> None:
        with self._lock:
            self._held.pop(task_id, None)

    def task_ids(self) -> list[str]:
        with self._lock:
            return list(self._held)
