"""The running task's context, visible to module code in the executing thread."""
from __future__ import annotations

import threading
import time
from contextvars import ContextVar
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

T = TypeVar("T")

_current: ContextVar["TaskContext | None"] = ContextVar("piano_task_context", default=None)


class CancelFlag:
    """threading.Event's set / is_set / wait for a task's cancellation, without building
    a lock and a condition for each task (most are never cancelled, and none waits)."""

    __slots__ = ("_set", "_event")

    def __init__(self) -> None:
        self._set = False
        self._event: threading.Event | None = None

    def set(self) -> None:
        self._set = True
        event = self._event
        if event is not None:
            event.set()

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        if self._set:
            return True
        if self._event is None:
            self._event = threading.Event()
        if self._set:  # set between the check and the event's creation
            self._event.set()
        return self._event.wait(timeout)


@dataclass
class TaskContext:
    task_id: str
    module_name: str
    method_name: str
    attempt: int
    worker_name: str
    deadline: float | None  # time.monotonic() value, or None
    agent_id: str | None = None
    cancel_event: CancelFlag = field(default_factory=CancelFlag)
    timed_out: bool = False
    child_pid: int | None = None  # process isolation: the task's own process
    started: float = field(default_factory=time.monotonic)
    # (start, end) monotonic times of the task's model calls, from any thread working
    # for it: what the demo's oracle is built from (the model's time, not the task's).
    model_spans: list = field(default_factory=list)
    # Calls of the task now waiting outside this process (the model, mostly), from any of
    # its threads, and who to tell when that count changes (the engine's CPU lanes).
    waits: int = 0
    wait_listener: Callable[["TaskContext", int], None] | None = None
    # Work the task's helpers leave for its end (one round trip for many small writes,
    # e.g. the model-call accounting), run by the engine when the task's call returns;
    # None where nothing runs them (a task in a child process): write at once there.
    end_hooks: list | None = None
    end_state: dict = field(default_factory=dict)
    # The tally (core.tally) the engine sends ahead of this task's outcome: increments
    # left there by the end hooks need no round trip of their own.
    outcome_tally: Any = None
    keep_result: bool = True  # False: the task was submitted with keep_result=False

    @property
    def cancelled(self) -> bool:
        """True once cancellation was requested (or the deadline passed): stop early."""
        return self.cancel_event.is_set()

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def model_time(self) -> float:
        """Seconds during which at least one of the task's model calls was open (calls
        made at once count once: the task waited on the model that long)."""
        total, reach = 0.0, float("-inf")
        for start, end in sorted(self.model_spans):
            if end > reach:
                total += end - max(start, reach)
                reach = end
        return total


def current_task() -> TaskContext | None:
    """The context of the task running in this thread, or None outside a task."""
    return _current.get()


def bind_task(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` made to run as part of the current task in whichever thread calls it, so
    that work a task hands to a thread pool still sees its context (cancellation, and
    the task its model calls are accounted to)."""
    ctx = _current.get()
    if ctx is None:
        return fn

    def bound(*args, **kwargs):
        token = _current.set(ctx)
        try:
            return fn(*args, **kwargs)
        finally:
            _current.reset(token)

    return bound


@contextmanager
def waiting():
    """Mark the running task as waiting outside this process (a model call, a remote
    service) while the block runs. A worker with many slots lets only a bounded number
    of tasks run Python at once (its CPU lanes, ``PIANO_CPU_LANES``); a waiting task does
    not hold one, so hundreds can wait while the CPU serves the rest. piano-dist's model
    clients mark their calls; use it around your own long blocking I/O."""
    ctx = _current.get()
    listener = ctx.wait_listener if ctx is not None else None
    if listener is None:
        yield
        return
    listener(ctx, 1)
    try:
        yield
    finally:
        listener(ctx, -1)


def note_model_call(start: float, end: float) -> None:
    """Account one model call (monotonic start and end) to the running task, if any."""
    ctx = _current.get()
    if ctx is not None:
        ctx.model_spans.append((start, end))


def set_current_task(ctx: TaskContext | None):
    return _current.set(ctx)


def reset_current_task(token) -> None:
    _current.reset(token)
