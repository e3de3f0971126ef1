"""Enums and records shared by the manager, scheduler, workers and CLI."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Any, Callable

from ..keys import PRIORITY_LEVELS


class Priority(IntEnum):
    """Lower is more urgent. Each level has its own RQ queue."""

    CRITICAL = 1
    HIGH = 2
    NORMAL = 3
    LOW = 4
    BACKGROUND = 5

    @property
    def level(self) -> str:
        return PRIORITY_LEVELS[self.value - 1]

    @classmethod
    def parse(cls, value: Any) -> "Priority":
        """Accept a Priority, its int value (1-5) or its name (any case)."""
        if isinstance(value, Priority):
            return value
        if isinstance(value, bool):
            raise ValueError(f"invalid priority {value!r}: use a Priority, 1-5, or one of {_names()}")
        if isinstance(value, int):
            try:
                return cls(value)
            except ValueError:
                raise ValueError(f"invalid priority {value!r}: use 1-5 or one of {_names()}") from None
        if isinstance(value, str) and value.upper() in cls.__members__:
            return cls[value.upper()]
        raise ValueError(f"invalid priority {value!r}: use a Priority, 1-5, or one of {_names()}")


def _names() -> str:
    return ", ".join(p.name.lower() for p in Priority)


class TaskStatus(str, Enum):
    QUEUED = "queued"
    DEFERRED = "deferred"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    DEPENDENCY_FAILED = "dependency_failed"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    def __str__(self) -> str:
        return self.value


TERMINAL_STATUSES = frozenset(
    {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.TIMED_OUT,
     TaskStatus.DEPENDENCY_FAILED}
)


class ModuleState(str, Enum):
    IDLE = "idle"
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    ERROR = "error"
    CANCELLED = "cancelled"


@dataclass
class ModuleTask:
    """A task as TaskScheduler takes it: module, method, arguments, priority."""

    task_id: str
    module_name: str
    method_name: str = "run"
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    priority: Priority = Priority.NORMAL
    max_duration: float | None = None
    dependencies: set = field(default_factory=set)
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    completed_at: float | None = None
    state: ModuleState = ModuleState.QUEUED
    result: Any = None
    error: str | None = None
    callback: Callable | None = None


@dataclass
class ModuleMetrics:
    execution_count: int = 0
    total_execution_time: float = 0.0
    average_execution_time: float = 0.0
    error_count: int = 0
    last_execution: float | None = None
    peak_memory_usage: int = 0
    concurrent_executions: int = 0


@dataclass
class ExecutorMetrics:
    """Cluster-wide or per-worker execution figures (``peak_memory_usage`` in bytes)."""

    tasks_executed: int = 0
    tasks_failed: int = 0
    tasks_timed_out: int = 0
    total_execution_time: float = 0.0
    average_execution_time: float = 0.0
    peak_memory_usage: int = 0
    peak_thread_count: int = 0
    current_load: float = 0.0
    last_cleanup: float | None = None
