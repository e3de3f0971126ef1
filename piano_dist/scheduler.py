"""TaskScheduler: the cluster's scheduling policy and per-module quotas, kept in Redis.

PRIORITY_FIRST is what the claim script does: queues are scanned CRITICAL first, FIFO
within a level. The scheduler also offers the seed's standalone interface
(``schedule_task`` / ``get_next_task`` / ``task_completed``) over the same queues.
"""
from __future__ import annotations

import json
from enum import Enum
from typing import Any

import redis

from .connection import get_connection
from .core.client import TaskClient, TaskSpec
from .core.types import ModuleState, ModuleTask, Priority, TaskStatus
from .errors import PianoError
from .keys import Keys


class SchedulingPolicy(str, Enum):
    PRIORITY_FIRST = "priority_first"
    ROUND_ROBIN = "round_robin"
    FAIR_SHARE = "fair_share"
    SHORTEST_JOB_FIRST = "shortest_job_first"
    WEIGHTED_PRIORITY = "weighted_priority"


SUPPORTED_POLICIES = frozenset({SchedulingPolicy.PRIORITY_FIRST})


class TaskScheduler:
    def __init__(self, scheduling_policy: SchedulingPolicy | str = SchedulingPolicy.PRIORITY_FIRST,
                 max_pending_tasks: int = 1000, enable_fairness: bool = True, *,
                 redis_url: str | None = None, connection: redis.Redis | None = None,
                 prefix: str | None = None):
        try:
            policy = SchedulingPolicy(scheduling_policy)
        except ValueError:
            raise ValueError(f"unknown scheduling policy {scheduling_policy!r}; policies: "
                             f"{', '.join(p.value for p in SchedulingPolicy)}") from None
        if policy not in SUPPORTED_POLICIES:
            raise PianoError(f"scheduling policy {policy.value!r} is not implemented yet in piano-dist; "
                             f"available: {', '.join(p.value for p in SUPPORTED_POLICIES)}")
        self.scheduling_policy = policy
        self.max_pending_tasks = max_pending_tasks
        self.enable_fairness = enable_fairness
        self.connection = get_connection(redis_url, connection)
        self.keys = Keys(prefix)
        self.client = TaskClient(self.connection, self.keys, max_queue_size=max_pending_tasks)

    def schedule_task(self, task: ModuleTask, dependencies: set | None = None) -> bool:
        """Queue a ModuleTask under its own id. False when the queue is full."""
        from .errors import QueueFullError

        deps = set(task.dependencies or ()) | set(dependencies or ())
        try:
            self.client.submit(TaskSpec(task.module_name, task.method_name, task.args, task.kwargs,
                                        task.priority, deps or None, task.callback, task.max_duration,
                                        task_id=task.task_id))
        except QueueFullError:
            return False
        task.state = ModuleState.QUEUED
        return True

    def get_queue_status(self) -> dict[str, Any]:
        with self.connection.pipeline(transaction=False) as pipe:
            for q in self.keys.queue_names:
                pipe.llen(self.keys.rq_queue(q))
            for q in self.keys.queue_names:
                pipe.zcard(self.keys.rq_registry("deferred", q))
            rows = pipe.execute()
        n = len(self.keys.queue_names)
        return {
            "queued_by_priority": {p.name.lower(): rows[i] for i, p in enumerate(Priority)},
            "ready_tasks": sum(rows[:n]),
            "blocked_tasks": sum(rows[n:]),
            "pending_tasks": sum(rows),
            "scheduling_policy": self.scheduling_policy.value,
        }

    def cancel_task(self, task_id: str) -> bool:
        return self.client.cancel(task_id)

    def get_task_status(self, task_id: str) -> TaskStatus | None:
        status = self.client.get_status(task_id)
        return TaskStatus(status["status"]) if status else None

    def shutdown(self) -> None:
        self.client.events.stop()
