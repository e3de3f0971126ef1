"""TaskScheduler: the seed's scheduler interface over the cluster's queues and policy.

The policy itself is applied where tasks are claimed (piano_dist/lua/task_claim.lua),
so it holds for every worker. Constructing a TaskScheduler with a policy sets the
cluster's policy (``scheduling_policy=None`` follows whatever is set). Used standalone,
``get_next_task`` claims the next task for this process as a pseudo-worker, by the
same policy, and ``task_completed`` records its outcome (releasing its dependents).
See docs/scheduling.md.
"""
from __future__ import annotations

import json
import os
import socket
import time
import uuid
from typing import Any

import redis

from .connection import get_connection
from .core.client import TaskClient, TaskSpec
from .core.types import ModuleState, ModuleTask, Priority, TaskStatus
from .errors import QueueFullError
from .keys import Keys
from .scheduling_policy import (DEFAULT_AGING_SECONDS, PolicyStore, SchedulingPolicy,  # noqa: F401
                                check_quota)

SUPPORTED_POLICIES = frozenset(SchedulingPolicy)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


class TaskScheduler:
    def __init__(self, scheduling_policy: SchedulingPolicy | str | None = SchedulingPolicy.WEIGHTED_PRIORITY,
                 max_pending_tasks: int = 1000, enable_fairness: bool = True, *,
                 redis_url: str | None = None, connection: redis.Redis | None = None,
                 prefix: str | None = None, aging_interval: float | None = None, lease: float = 300.0):
        """``lease``: seconds a task taken by ``get_next_task`` stays this process's
        before the stalled sweep hands it to another taker (no renewal here)."""
        self.max_pending_tasks = max_pending_tasks
        self.enable_fairness = enable_fairness
        self.connection = get_connection(redis_url, connection)
        self.keys = Keys(prefix)
        self.client = TaskClient(self.connection, self.keys, max_queue_size=max_pending_tasks)
        self.policies = PolicyStore(self.connection, self.keys)
        self.lease = lease
        self.worker_name = f"scheduler.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        self._taken: dict[str, tuple[int, float]] = {}  # task id -> (attempt, monotonic start)
        if scheduling_policy is not None:
            self.policies.set_policy(scheduling_policy, aging_interval, enable_fairness)
        elif aging_interval is not None:
            self.policies.set_policy(self.scheduling_policy, aging_interval)

    # --- policy -------------------------------------------------------------------
    @property
    def scheduling_policy(self) -> SchedulingPolicy:
        """The cluster's current policy (read from Redis)."""
        return self.policies.get().policy

    def set_policy(self, policy: SchedulingPolicy | str, aging_interval: float | None = None,
                   enable_fairness: bool | None = None) -> None:
        self.policies.set_policy(policy, aging_interval, enable_fairness)

    def set_module_quota(self, module_name: str, quota: int) -> None:
        """Cap the module's running tasks across the cluster at ``quota`` (>= 1) under
        FAIR_SHARE (and WEIGHTED_PRIORITY with fairness); its share is proportional to it."""
        self.policies.set_quota(module_name, quota)

    def clear_module_quota(self, module_name: str) -> bool:
        return self.policies.clear_quota(module_name)

    # --- the seed's interface -------------------------------------------------------
    def schedule_task(self, task: ModuleTask, dependencies: set | None = None) -> bool:
        """Queue a ModuleTask under its own id. False when the backlog is full."""
        deps = set(task.dependencies or ()) | set(dependencies or ())
        try:
            self.client.submit(TaskSpec(task.module_name, task.method_name, task.args, task.kwargs,
                                        task.priority, deps or None, task.callback, task.max_duration,
                                        task_id=task.task_id))
        except QueueFullError:
            return False
        task.state = ModuleState.QUEUED
        return True

    def get_next_task(self) -> ModuleTask | None:
        """Claim the next task by the cluster's policy for this process (a pseudo-worker
        named ``self.worker_name``); None when nothing is ready. Report its end with
        ``task_completed``; workers never run a task claimed here."""
        rows = self.client.scripts.task_claim(
            keys=[self.keys.rq_queue(q) for q in self.keys.queue_names],
            args=[self.keys.prefix, self.worker_name, int(self.lease * 1000), 1, "[]", 100])
        if not rows:
            return None
        row = [_text(v) for v in rows[0]]
        task_id, module, method, payload, timeout, attempt = row[:6]
        args, kwargs = json.loads(payload) if payload else ([], {})
        priority = int(self.connection.hget(self.keys.rq_job(task_id), "piano_priority") or Priority.NORMAL)
        self._taken[task_id] = (int(attempt), time.monotonic())
        return ModuleTask(task_id, module, method, tuple(args), kwargs, Priority(priority),
                          float(timeout) if timeout else None, started_at=time.time(), state=ModuleState.RUNNING)

    def task_completed(self, task_id: str, success: bool = True, result: Any = None) -> bool:
        """Record the end of a task taken by ``get_next_task``: completion releases its
        dependents, failure settles them. False when this scheduler does not hold it."""
        taken = self._taken.pop(task_id, None)
        if taken is None:
            return False
        attempt, started = taken
        outcome = "completed" if success else "failed"
        payload = json.dumps(result) if success else "failed (reported by TaskScheduler.task_completed)"
        answer = self.client.scripts.task_finish(
            keys=[self.keys.rq_job(task_id)],
            args=[self.keys.prefix, task_id, self.worker_name, attempt, outcome, payload,
                  self.client.timing.result_ttl, int((time.monotonic() - started) * 1000), ""])
        return _text(answer[0]) != "refused"

    def cancel_task(self, task_id: str) -> bool:
        return self.client.cancel(task_id)

    def get_task_status(self, task_id: str) -> TaskStatus | None:
        status = self.client.get_status(task_id)
        return TaskStatus(status["status"]) if status else None

    # --- inspection -----------------------------------------------------------------
    def get_queue_status(self) -> dict[str, Any]:
        with self.connection.pipeline(transaction=False) as pipe:
            for q in self.keys.queue_names:
                pipe.llen(self.keys.rq_queue(q))
            for q in self.keys.queue_names:
                pipe.zcard(self.keys.rq_registry("deferred", q))
            pipe.zcard(self.keys.running)
            rows = pipe.execute()
        n = len(self.keys.queue_names)
        queued = rows[:n]
        config = self.policies.get()
        return {
            "queued_by_priority": {p.name.lower(): queued[i] for i, p in enumerate(Priority)},
            "priority_queue_size": queued[0] + queued[1],  # the seed's heap: CRITICAL and HIGH
            "ready_queue_size": sum(queued[2:]),
            "ready_tasks": sum(queued),
            "blocked_tasks": sum(rows[n:2 * n]),
            "pending_tasks": sum(rows[:2 * n]),
            "running_tasks": rows[2 * n],
            "running_by_module": self.policies.running_by_module(),
            "module_quotas": config.quotas,
            "scheduling_policy": config.policy.value,
            "aging_interval": config.aging_interval,
        }

    def get_scheduling_metrics(self) -> dict[str, Any]:
        """Cluster-wide figures since the Redis was new: waits are from queued to started."""
        stats = {_text(k): int(v) for k, v in self.connection.hgetall(self.keys.stats).items()}
        sched = {_text(k): int(v) for k, v in self.connection.hgetall(self.keys.sched_part("stats")).items()}

        def grouped(kind: str, name=lambda key: key) -> tuple[dict, dict]:
            starts = {name(k.split(":", 2)[2]): v for k, v in sched.items() if k.startswith(f"starts:{kind}:")}
            waits = {name(k.split(":", 2)[2]): sched.get(f"wait_ms:{kind}:{k.split(':', 2)[2]}", 0) / 1000 / v
                     for k, v in sched.items() if k.startswith(f"starts:{kind}:") and v}
            return starts, waits

        level_name = lambda raw: Priority(int(raw)).name.lower()  # noqa: E731
        starts_p, wait_p = grouped("p", level_name)
        starts_m, wait_m = grouped("m")
        started = sum(starts_p.values())
        total_wait = sum(sched.get(k, 0) for k in sched if k.startswith("wait_ms:p:")) / 1000
        executed = stats.get("tasks_executed", 0)
        return {
            "scheduling_policy": self.scheduling_policy.value,
            "total_scheduled": stats.get("submitted", 0),
            "total_started": started,
            "total_completed": stats.get("completed", 0),
            "average_wait_time": total_wait / started if started else 0.0,
            "average_wait_by_priority": wait_p,
            "average_wait_by_module": wait_m,
            "average_execution_time": stats.get("execution_ms", 0) / 1000 / executed if executed else 0.0,
            "priority_distribution": {level_name(k.split(":", 2)[2]): v for k, v in sched.items()
                                      if k.startswith("submitted:p:")},
            "starts_by_priority": starts_p,
            "starts_by_module": starts_m,
            "running_by_module": self.policies.running_by_module(),
            "dependency_violations": sched.get("dependency_violations", 0),
        }

    def shutdown(self) -> None:
        """Give back tasks taken by ``get_next_task`` and not completed, then stop."""
        for task_id, (attempt, _) in list(self._taken.items()):
            self.client.scripts.task_release(
                keys=[self.keys.rq_job(task_id)],
                args=[self.keys.prefix, task_id, self.worker_name, attempt,
                      "TaskScheduler shut down before the task was completed", self.client.timing.result_ttl])
        self._taken.clear()
        self.client.events.stop()
