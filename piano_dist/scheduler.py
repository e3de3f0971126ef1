"""TaskScheduler: a facade over the cluster's scheduling, with the original framework's
interface (docs/compat.md), and a queue of ModuleTasks of its own.

It schedules nothing itself: the order in which tasks start is decided where they are
claimed, by the policy every worker follows.

The policy is the cluster's (``<prefix>:sched``, see docs/scheduling.md): it is applied
where tasks are claimed (piano_dist/lua/task_claim.lua), by every worker and by
``get_next_task`` alike. Constructing a TaskScheduler with a policy sets it
(``scheduling_policy=None`` follows whatever is set); quotas are the cluster's too.

``schedule_task`` / ``get_next_task`` / ``task_completed`` work on the scheduler's own
queues (a queue group, ``<prefix>@<group>.<level>``), which no worker serves: they take
ModuleTasks for any module name, registered or not, and hand them to whoever calls
``get_next_task``, by the cluster's policy. ``TaskScheduler(...)`` gets a private group
that ends (its tasks cancelled) at ``shutdown()``; ``TaskScheduler(..., name="planner")``
joins a group that every process naming it shares. ``manager.task_scheduler`` (or
``TaskScheduler.for_cluster(...)``) works on the cluster's queues instead: its tasks
are ordinary tasks of registered modules, which workers run too.
"""
from __future__ import annotations

import json
import os
import socket
import time
import uuid
from typing import Any

import redis

from .arguments import is_whole
from .connection import get_connection
from .core.client import TaskClient, TaskSpec
from .core.listing import queue_counts
from .core.task_scripts import FinishReply, RunOutcome
from .core.types import ModuleState, ModuleTask, Priority, TaskStatus
from .errors import QueueFullError
from .keys import Keys
from .replies import as_text
from .security import SecurityValidator
from .scheduling_policy import (DEFAULT_AGING_SECONDS, PolicyStore, SchedulingPolicy,  # noqa: F401
                                check_quota)

SUPPORTED_POLICIES = frozenset(SchedulingPolicy)
_CLUSTER = object()


class SchedulingMetrics(dict):
    """The scheduler's figures: a dict (``metrics["total_scheduled"]``) whose keys also
    read as attributes (``metrics.total_scheduled``), for code that reads the original's
    dataclass."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class TaskScheduler:
    def __init__(self, scheduling_policy: SchedulingPolicy | str | None = SchedulingPolicy.WEIGHTED_PRIORITY,
                 max_pending_tasks: int = 1000, enable_fairness: bool = True,
                 dependency_timeout: float = 300.0, *, name: str | None = None,
                 redis_url: str | None = None, connection: redis.Redis | None = None,
                 prefix: str | None = None, aging_interval: float | None = None, lease: float = 300.0,
                 _queues: Any = None):
        """``name``: share the queues of the scheduler of that name (any process); None:
        queues of this instance only. ``lease``: seconds a task taken by
        ``get_next_task`` stays the taker's before the stalled sweep hands it to another
        taker (no renewal here). ``dependency_timeout`` is accepted for the original
        API's signature: dependents wait for their parents to end, however long."""
        if not is_whole(max_pending_tasks) or max_pending_tasks < 0:
            raise ValueError(f"max_pending_tasks must be a non-negative integer (0 = unbounded), "
                             f"not {max_pending_tasks!r}")
        self.max_pending_tasks = max_pending_tasks
        self.enable_fairness = enable_fairness
        self.dependency_timeout = dependency_timeout
        self.connection = get_connection(redis_url, connection)
        cluster_keys = Keys(prefix)
        self.is_cluster = _queues is _CLUSTER
        self.is_private = not self.is_cluster and name is None
        if self.is_cluster:
            self.name = None
            self.keys = cluster_keys
        else:
            group = f"sched-{name}" if name is not None else f"sched-{uuid.uuid4().hex[:12]}"
            self.name = name if name is not None else group
            self.keys = cluster_keys.grouped(group)
        self.client = TaskClient(self.connection, self.keys,
                                 max_queue_size=max_pending_tasks if self.is_cluster else 0,
                                 require_registration=self.is_cluster)
        self.policies = PolicyStore(self.connection, cluster_keys)
        self.lease = lease
        self.worker_name = f"scheduler.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        self._taken: dict[str, tuple[int, float]] = {}  # task id -> (attempt, monotonic start)
        self._closed = False
        if not self.is_cluster:
            self.policies.add_origins(self.keys.queue_names)
        if scheduling_policy is not None:
            self.policies.set_policy(scheduling_policy, aging_interval, enable_fairness)
        elif aging_interval is not None:
            self.policies.set_policy(self.scheduling_policy, aging_interval)

    @classmethod
    def for_cluster(cls, scheduling_policy: SchedulingPolicy | str | None = None, max_pending_tasks: int = 0,
                    **kwargs: Any) -> "TaskScheduler":
        """The scheduler of the cluster's own queues (what ``manager.task_scheduler`` is):
        ``schedule_task`` submits tasks of registered modules that workers run too."""
        return cls(scheduling_policy, max_pending_tasks, _queues=_CLUSTER, **kwargs)

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

    # --- scheduling ModuleTasks -------------------------------------------------------
    def schedule_task(self, task: ModuleTask, dependencies: set | None = None) -> bool:
        """Queue a ModuleTask under its own id (unique among the cluster's tasks for the
        result TTL). False when ``max_pending_tasks`` tasks are pending already (queued,
        waiting for parents, or taken and not completed)."""
        self._check_open()
        deps = set(task.dependencies or ()) | set(dependencies or ())
        if not self.is_cluster and self.max_pending_tasks and self.pending_count() >= self.max_pending_tasks:
            return False
        try:
            self.client.submit(TaskSpec(task.module_name, task.method_name, task.args, task.kwargs,
                                        task.priority, deps or None, task.callback, task.max_duration,
                                        task_id=task.task_id))
        except QueueFullError:
            return False
        task.state = ModuleState.QUEUED
        return True

    def pending_count(self) -> int:
        """Tasks on this scheduler's queues not yet completed: queued, deferred, taken."""
        with self.connection.pipeline(transaction=False) as pipe:
            for q in self.keys.queue_names:
                pipe.llen(self.keys.rq_queue(q))
                pipe.zcard(self.keys.rq_registry("deferred", q))
                pipe.zcard(self.keys.rq_registry("wip", q))
            return sum(pipe.execute())

    def get_next_task(self) -> ModuleTask | None:
        """Take the next task by the cluster's policy (as a pseudo-worker named
        ``self.worker_name``); None when nothing is ready. Report its end with
        ``task_completed``. Tasks of the cluster's scheduler taken here are not run by
        any worker."""
        self._check_open()
        rows = self.client.tasks.claim([self.keys.rq_queue(q) for q in self.keys.queue_names], self.worker_name,
                                       int(self.lease * 1000), 1, "[]", 100, any_module=not self.is_cluster)
        if not rows:
            return None
        row = rows[0]
        args, kwargs = json.loads(row.payload) if row.payload else ([], {})
        priority = int(self.connection.hget(self.keys.rq_job(row.task_id), "piano_priority") or Priority.NORMAL)
        self._taken[row.task_id] = (row.attempt, time.monotonic())
        return ModuleTask(row.task_id, row.module, row.method, tuple(args), kwargs, Priority(priority),
                          float(row.timeout) if row.timeout else None, started_at=time.time(),
                          state=ModuleState.RUNNING)

    def task_completed(self, task_id: str, success: bool = True, result: Any = None) -> bool:
        """Record the end of a taken task: completion releases its dependents, failure
        settles them (``dependency_failed``). A task of a shared scheduler may be
        completed by any process; the cluster's scheduler completes only what it took.
        False when the task is not taken (unknown, already ended, or taken elsewhere
        from the cluster's queues). A result is checked as a worker checks one (JSON
        values, finite numbers, size): one that would not read back the same raises
        InvalidArgument and the task stays taken."""
        payload = (SecurityValidator.encode_result(result) if success
                   else "failed (reported by TaskScheduler.task_completed)")
        taken = self._taken.pop(task_id, None)
        worker = self.worker_name
        if taken is not None:
            attempt, started = taken
            elapsed_ms = int((time.monotonic() - started) * 1000)
        elif not self.is_cluster and isinstance(task_id, str):
            row = self.connection.hmget(self.keys.rq_job(task_id), "piano_status", "origin", "worker_name",
                                        "piano_attempts")
            if as_text(row[0]) != "running" or as_text(row[1]) not in self.keys.queue_names:
                return False
            worker, attempt, elapsed_ms = as_text(row[2]), int(row[3] or 0), 0
        else:
            return False
        outcome = "completed" if success else "failed"
        reply = self.client.tasks.finish(RunOutcome(task_id, worker, attempt, outcome, payload, elapsed_ms))
        return not FinishReply.decode(reply).refused

    def cancel_task(self, task_id: str) -> bool:
        return self.client.cancel(task_id)

    def get_task_status(self, task_id: str) -> TaskStatus | None:
        status = self.client.get_status(task_id)
        return TaskStatus(status["status"]) if status else None

    # --- inspection -----------------------------------------------------------------
    def get_queue_status(self) -> dict[str, Any]:
        counts = queue_counts(self.connection, self.keys)
        queued = counts.queued
        config = self.policies.get()
        return {
            "queued_by_priority": {p.name.lower(): queued[i] for i, p in enumerate(Priority)},
            "priority_queue_size": queued[0] + queued[1],  # CRITICAL and HIGH (docs/compat.md)
            "ready_queue_size": sum(queued[2:]),
            "ready_tasks": sum(queued),
            "blocked_tasks": sum(counts.deferred),
            "pending_tasks": sum(queued) + sum(counts.deferred),
            "running_tasks": counts.running,
            "running_by_module": self.policies.running_by_module(),
            "module_quotas": config.quotas,
            "scheduling_policy": config.policy.value,
            "aging_interval": config.aging_interval,
        }

    def get_scheduling_metrics(self) -> SchedulingMetrics:
        """Cluster-wide figures since the Redis was new (every scheduler's tasks and the
        workers'): waits are from queued to started."""
        stats = {as_text(k): int(v) for k, v in self.connection.hgetall(self.keys.stats).items()}
        sched = {as_text(k): int(v) for k, v in self.connection.hgetall(self.keys.sched_part("stats")).items()}

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
        return SchedulingMetrics({
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
        })

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this TaskScheduler was shut down")

    def shutdown(self) -> None:
        """Give back tasks taken by ``get_next_task`` and not completed. A private
        scheduler (no ``name``) also cancels every task left on its queues, which nobody
        else can reach, and forgets its queues. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for task_id, (attempt, _) in list(self._taken.items()):
            self.client.tasks.release(task_id, self.worker_name, attempt,
                                      "TaskScheduler shut down before the task was completed")
        self._taken.clear()
        if self.is_private:
            self._discard_queues()
        self.client.events.stop()

    def _discard_queues(self) -> None:
        names = self.keys.queue_names
        with self.connection.pipeline(transaction=False) as pipe:
            for q in names:
                pipe.lrange(self.keys.rq_queue(q), 0, -1)
                pipe.zrange(self.keys.rq_registry("deferred", q), 0, -1)
            rows = pipe.execute()
        for task_id in dict.fromkeys(as_text(i) for row in rows for i in row):
            self.client.cancel(task_id, f"TaskScheduler {self.name} shut down")
        self.policies.remove_origins(names)
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.srem(self.keys.rq_queues_set(), *[self.keys.rq_queue(q) for q in names])
            for q in names:
                pipe.delete(self.keys.rq_queue(q))
            pipe.execute()
