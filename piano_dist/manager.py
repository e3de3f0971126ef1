"""ConcurrentModuleManager: the central hub, with tasks as RQ jobs in Redis.

It registers modules cluster-wide, submits tasks to the priority queues, reads their
status from Redis, relays task events to local callbacks and, with ``max_workers > 0``,
runs that many execution slots in this process. Worker processes started anywhere
against the same Redis (``piano-dist worker``) share the work.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import time
from collections import deque
from typing import Any, Callable, Iterable

import redis

from .arguments import is_whole
from .config import Timing
from .connection import get_connection
from .core.client import TaskClient, TaskSpec
from .core.listing import held_counts, queue_counts
from .core.types import ModuleMetrics, ModuleState, ModuleTask, Priority, TaskStatus
from .errors import ManagerShutdownError, SecurityError
from .in_process_args import InProcessArguments, needs_process
from .executor import ModuleExecutor
from .keys import PRIORITY_LEVELS, Keys
from .replies import as_text
from .scheduler import SchedulingPolicy, TaskScheduler
from .security import SecurityValidator
from .state.agent_state import agent_id_of

log = logging.getLogger("piano_dist.manager")

_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
TASK_HISTORY_LIMIT = 1000
# Submitted-and-unseen tasks that trigger a refresh on submit. After a refresh the next one
# waits until the tracked set has doubled, so each submitted task pays O(1) refresh work
# on average, even while none of them ends (a backlog with no worker running).
_REFRESH_AT = 10_000
_MODULE_STATE_OF = {
    "queued": ModuleState.QUEUED, "deferred": ModuleState.QUEUED, "running": ModuleState.RUNNING,
    "completed": ModuleState.COMPLETED, "cancelled": ModuleState.CANCELLED, "failed": ModuleState.ERROR,
    "timed_out": ModuleState.ERROR, "dependency_failed": ModuleState.ERROR,
}

_level = os.environ.get("CONCURRENT_FRAMEWORK_LOG_LEVEL") or os.environ.get("PIANO_LOG_LEVEL")
if _level:
    for _name in ("piano_dist", "concurrent_framework"):
        logging.getLogger(_name).setLevel(_level.upper())


class ConcurrentModuleManager:
    def __init__(self, agent_state: Any = None, max_workers: int = 4, max_queue_size: int = 100,
                 enable_monitoring: bool = True, task_timeout: float | None = 30.0, *,
                 redis_url: str | None = None, connection: redis.Redis | None = None,
                 prefix: str | None = None, agent_id: str | None = None,
                 scheduling_policy: SchedulingPolicy | str | None = None,
                 timing: Timing | None = None):
        if not is_whole(max_workers) or max_workers < 0:
            raise ValueError(f"max_workers must be a non-negative integer, not {max_workers!r}")
        if not is_whole(max_queue_size) or max_queue_size < 0:
            raise ValueError(f"max_queue_size must be a non-negative integer (0 = unbounded), not {max_queue_size!r}")
        if task_timeout is not None:
            SecurityValidator.validate_seconds(task_timeout, "task_timeout")  # a ValueError naming it
        self.agent_state = agent_state
        self.agent_id = agent_id or agent_id_of(agent_state)
        self.max_workers = max_workers
        self.max_queue_size = max_queue_size
        self.task_timeout = task_timeout
        self.connection = get_connection(redis_url, connection)
        self.keys = Keys(prefix)
        self.timing = timing or Timing()
        self.client = TaskClient(self.connection, self.keys, max_queue_size, task_timeout, self.timing)
        self.modules: dict[str, Any] = {}
        self.module_configs: dict[str, dict] = {}
        self.module_states: dict[str, ModuleState] = {}
        # Tasks this manager submitted and has not seen end: active_tasks,
        # refreshed from Redis when read; ended ones move to task_history.
        self._submitted: dict[str, ModuleTask] = {}
        self._untracked: list[tuple[list[str], list[TaskSpec], float]] = []
        self._untracked_count = 0
        self._refresh_due = _REFRESH_AT
        self._submitted_lock = threading.Lock()
        self.task_history: deque[ModuleTask] = deque(maxlen=TASK_HISTORY_LIMIT)
        # A policy given here becomes the cluster's (every worker follows it); None keeps
        # whatever is set (PRIORITY_FIRST on a new Redis), so a manager opened only to
        # look does not reset it.
        self.task_scheduler = TaskScheduler.for_cluster(scheduling_policy, max_pending_tasks=max_queue_size,
                                                        connection=self.connection, prefix=self.keys.prefix)
        self.in_process = InProcessArguments() if max_workers > 0 else None
        self.module_executor = ModuleExecutor(max_workers, max_queue_size, enable_monitoring,
                                              connection=self.connection, prefix=self.keys.prefix,
                                              local_modules=self.modules, timing=self.timing,
                                              in_process=self.in_process)
        if self.in_process is not None:
            self.task_scheduler.policies.add_origins(self._in_process_keys().queue_names)
        self._resource_coordinator = None
        self._state_coordinator = None
        self._coordinator_lock = threading.Lock()
        self._started_at = time.time()
        self._is_shutdown = False
        self.module_executor.start()

    # --- coordinators (built on first use) -------------------------------------------
    @property
    def resource_coordinator(self):
        with self._coordinator_lock:
            if self._resource_coordinator is None:
                from .resources import ResourceCoordinator

                self._resource_coordinator = ResourceCoordinator(
                    max_concurrent_locks=max(2 * self.max_workers, 10),
                    default_timeout=self.task_timeout or 30.0, connection=self.connection)
            return self._resource_coordinator

    @property
    def state_coordinator(self):
        with self._coordinator_lock:
            if self._state_coordinator is None:
                from .state import StateCoordinator, SyncPolicy

                self._state_coordinator = StateCoordinator(self.agent_state, SyncPolicy.IMMEDIATE,
                                                           connection=self.connection, agent_id=self.agent_id)
            return self._state_coordinator

    # --- modules ------------------------------------------------------------------
    def register_module(self, name: str, module: Any, config: dict | None = None) -> None:
        self._check_open()
        if name in self.modules:
            raise ValueError(f"module {name!r} is already registered with this manager")
        # The instance goes in first: this manager's slots may claim the module's queued
        # tasks the moment its registration lands, and must find it here, not try to
        # build it from the registration.
        self.modules[name] = module
        try:
            self.client.registry.register(name, module, config, agent_id=self.agent_id)
        except BaseException:
            del self.modules[name]
            raise
        self.module_configs[name] = dict(config or {})
        self.module_states[name] = ModuleState.IDLE

    def unregister_module(self, name: str) -> None:
        """Remove the module cluster-wide; its queued and deferred tasks are cancelled."""
        self.client.unregister_module(name)
        for table in (self.modules, self.module_configs, self.module_states):
            table.pop(name, None)

    def pause_module(self, name: str) -> None:
        """Cluster-wide: no worker starts this module's tasks until resume."""
        self.client.pause_module(name)
        if name in self.module_states:
            self.module_states[name] = ModuleState.PAUSED

    def resume_module(self, name: str) -> None:
        self.client.resume_module(name)
        if name in self.module_states:
            self.module_states[name] = ModuleState.IDLE

    @property
    def module_metrics(self) -> dict[str, ModuleMetrics]:
        """module name -> ModuleMetrics for this manager's modules, read from the cluster:
        ``execution_count`` is the runs started (any worker), ``concurrent_executions``
        the runs going on now; the other fields are not recorded per module (the
        cluster's totals are in get_system_status and module_executor.get_metrics)."""
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.sched_part("stats"))
            pipe.hgetall(self.keys.sched_part("running"))
            stats, running = pipe.execute()
        starts = {as_text(k, "replace")[len("starts:m:"):]: int(v) for k, v in stats.items()
                  if k.startswith(b"starts:m:")}
        now = {as_text(k, "replace"): int(v) for k, v in running.items()}
        return {name: ModuleMetrics(execution_count=starts.get(name, 0),
                                    concurrent_executions=max(0, now.get(name, 0)))
                for name in self.modules}

    def get_module_metrics(self, name: str) -> ModuleMetrics | None:
        return self.module_metrics.get(name)

    # --- tasks --------------------------------------------------------------------
    def submit_task(self, module_name: str, method_name: str = "run", args: Iterable = (),
                    kwargs: dict | None = None, priority: Priority | int | str = Priority.NORMAL,
                    dependencies: Iterable[str] | None = None, callback: Callable | None = None,
                    timeout: float | None = None, *, max_duration: float | None = None,
                    allow_failure: Iterable[str] | None = None, retries: int = 0,
                    retry_delay: float = 0.0, max_attempts: int | None = None) -> str:
        """Queue ``module.method(*args, **kwargs)``; return the task id.

        ``callback(status)`` is called once, in this process, with the final status dict.
        Arguments are JSON values, except for a module registered with this manager
        while it runs slots (``max_workers > 0``): objects are then kept in this process
        and the task runs in its slots (see piano_dist/in_process_args.py).

        Raises UnknownModuleError (a KeyError), SecurityError (a ValueError) for bad
        input, UnknownTaskError for an unknown dependency, QueueFullError past
        ``max_queue_size`` and ManagerShutdownError after shutdown.
        """
        self._check_open()
        spec = TaskSpec(module_name, method_name, tuple(args) if isinstance(args, (list, tuple)) else args,
                        kwargs, priority, dependencies, callback,
                        timeout if timeout is not None else max_duration,
                        allow_failure, retries, retry_delay, max_attempts, None)
        if isinstance(spec.args, tuple) and needs_process(spec.args, spec.kwargs):
            task_id = self._submit_in_process(spec)
        else:
            task_id = self.client.submit(spec)
        self._track([task_id], [spec])
        return task_id

    def _in_process_keys(self) -> Keys:
        return self.keys.grouped(self.in_process.queue_group)

    def _submit_in_process(self, spec: TaskSpec) -> str:
        if self.in_process is None or spec.module_name not in self.modules:
            try:
                SecurityValidator.encode_execution_args(spec.args, spec.kwargs)
            except SecurityError as exc:
                where = ("this manager runs no slots (max_workers=0)" if self.in_process is None
                         else f"module {spec.module_name!r} is not registered with this manager")
                raise SecurityError(f"{exc} (objects as arguments stay in the submitting process, so they are "
                                    f"accepted only for modules registered with a manager that runs slots; "
                                    f"{where})") from None
        in_process = self.in_process
        task_id = f"{_ID_UNSAFE.sub('_', spec.module_name)[:40]}_{spec.method_name}_{os.urandom(8).hex()}"
        user_callback = spec.callback

        def ended(status: dict) -> None:
            in_process.discard(task_id)
            if user_callback is not None:
                user_callback(status)

        stand_in_args, stand_in_kwargs = in_process.keep(task_id, spec.args, spec.kwargs)
        pinned = dataclasses.replace(spec, args=stand_in_args, kwargs=stand_in_kwargs, callback=ended,
                                     task_id=task_id)
        try:
            return self.client.submit(pinned, queue_group=in_process.queue_group)
        except BaseException:
            in_process.discard(task_id)
            raise

    def submit_many(self, specs: Iterable[Any]) -> list[str]:
        """Submit many tasks (TaskSpec or dicts of submit_task's arguments) in one round trip."""
        self._check_open()
        specs = [TaskSpec.coerce(s, i) for i, s in enumerate(specs)]
        ids = self.client.submit_many(specs)
        self._track(ids, specs)
        return ids

    # --- active_tasks / task_history ---------------------------------------------------
    def _track(self, ids: list[str], specs: list[TaskSpec]) -> None:
        # O(1) here (submit_many's caller gets its ids back at once); ModuleTasks are
        # built when active_tasks or task_history is next read.
        with self._submitted_lock:
            self._untracked.append((ids, specs, time.time()))
            self._untracked_count += len(ids)
            crowded = self._untracked_count + len(self._submitted) >= self._refresh_due
        if crowded:
            self._refresh_submitted()

    def _expand_untracked(self) -> None:
        """Under _submitted_lock: ModuleTasks for the tasks submitted since the last read."""
        for ids, specs, created in self._untracked:
            for task_id, spec in zip(ids, specs):
                try:
                    priority = Priority.parse(spec.priority)
                except ValueError:
                    priority = Priority.NORMAL
                self._submitted[task_id] = ModuleTask(
                    task_id, spec.module_name, spec.method_name, tuple(spec.args or ()), dict(spec.kwargs or {}),
                    priority, spec.timeout, set(spec.dependencies or ()), created_at=created)
        self._untracked.clear()
        self._untracked_count = 0

    def _refresh_submitted(self) -> dict[str, ModuleTask]:
        with self._submitted_lock:
            self._expand_untracked()
            ids = list(self._submitted)
        statuses = self.client.get_statuses(ids) if ids else {}
        with self._submitted_lock:
            for task_id, status in statuses.items():
                task = self._submitted.get(task_id)
                if task is None:
                    continue
                if status is None:  # expired from Redis: it ended long ago
                    self.task_history.append(self._submitted.pop(task_id))
                    continue
                task.state = _MODULE_STATE_OF.get(status["status"], task.state)
                task.started_at = status.get("started_at") or task.started_at
                if TaskStatus(status["status"]).is_terminal:
                    if self.in_process is not None:
                        self.in_process.discard(task_id)
                    task.completed_at = status.get("ended_at")
                    task.result = status.get("result")
                    task.error = status.get("error")
                    self.task_history.append(self._submitted.pop(task_id))
            self._refresh_due = max(_REFRESH_AT, 2 * len(self._submitted))
            return dict(self._submitted)

    @property
    def active_tasks(self) -> dict[str, ModuleTask]:
        """task id -> ModuleTask for the tasks this manager submitted that have not ended
        (queued, deferred or running; read from Redis on access). A task whose
        cancellation was accepted leaves at once."""
        return self._refresh_submitted()

    def get_task_status(self, task_id: str) -> dict | None:
        return self.client.get_status(task_id)

    def wait(self, task_ids: Iterable[str] | str, timeout: float | None = None) -> dict[str, dict]:
        return self.client.wait(task_ids, timeout)

    def get_result(self, task_id: str, timeout: float | None = None) -> Any:
        return self.client.get_result(task_id, timeout)

    def cancel_task(self, task_id: str) -> bool:
        """True if the task will end cancelled: at once when queued or deferred; when
        running, its result is dropped and it ends cancelled once its method returns."""
        cancelled = self.client.cancel(task_id)
        if cancelled:
            with self._submitted_lock:
                self._expand_untracked()
                task = self._submitted.pop(task_id, None)
                if task is not None:
                    task.state = ModuleState.CANCELLED
                    self.task_history.append(task)
        return cancelled

    # --- events -------------------------------------------------------------------
    def add_event_callback(self, event: str, callback: Callable) -> None:
        self.client.events.add_callback(event, callback)

    def remove_event_callback(self, event: str, callback: Callable) -> bool:
        return self.client.events.remove_callback(event, callback)

    # --- status -------------------------------------------------------------------
    def get_system_status(self) -> dict[str, Any]:
        keys = self.keys
        counts = queue_counts(self.connection, keys, lambda pipe: pipe.hgetall(keys.stats),
                              lambda pipe: pipe.hlen(keys.modules), lambda pipe: pipe.smembers(keys.paused_modules))
        raw_stats, cluster_modules, paused_raw = counts.extra
        paused = sorted(m.decode() for m in paused_raw)
        # Tasks set aside (a paused module's held lists, parked lists) still wait at their priority.
        held = held_counts(self.connection, keys, paused)
        parked = self.client.parked_counts().values()
        queued = {level: sum(n) for level, n in zip(PRIORITY_LEVELS, zip(counts.queued, held, parked))}
        deferred = sum(counts.deferred)
        running = counts.running
        stats = {k.decode(): int(v) for k, v in raw_stats.items()}
        workers = self.module_executor.worker_metrics()
        return {
            "registered_modules": len(self.modules),
            "cluster_modules": cluster_modules,
            "active_tasks": sum(queued.values()) + deferred + running,
            "queued_tasks": sum(queued.values()),
            "queued_by_priority": queued,
            "deferred_tasks": deferred,
            "running_tasks": running,
            "completed_tasks": stats.get("completed", 0),
            "failed_tasks": stats.get("failed", 0) + stats.get("timed_out", 0) + stats.get("dependency_failed", 0),
            "cancelled_tasks": stats.get("cancelled", 0),
            "tasks_by_status": {s.value: stats.get(s.value, 0) for s in TaskStatus if s.is_terminal},
            "workers": workers,
            "total_slots": sum(w["slots"] for w in workers),
            "paused_modules": paused,
            "is_paused": self.module_executor.is_paused(),
            "is_shutdown": self._is_shutdown,
            "uptime_seconds": time.time() - self._started_at,
        }

    # --- lifecycle ----------------------------------------------------------------
    def _check_open(self) -> None:
        if self._is_shutdown:
            raise ManagerShutdownError("the manager has been shut down; create a new one to submit tasks")

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop this process's slots (running tasks get ``timeout`` seconds, the rest go
        back to the queue) and stop listening for events. Nothing queued is lost."""
        if self._is_shutdown:
            return
        self._is_shutdown = True
        self.module_executor.shutdown(timeout)
        if self.in_process is not None:
            self._end_in_process_tasks()
        self.client.events.stop()
        for coordinator in (self._resource_coordinator, self._state_coordinator):
            if coordinator is not None and hasattr(coordinator, "shutdown"):
                try:
                    coordinator.shutdown()
                except Exception:
                    log.exception("coordinator shutdown failed")

    def _end_in_process_tasks(self) -> None:
        """Tasks pinned here cannot run anywhere else: cancel those left, forget the queues."""
        names = self._in_process_keys().queue_names
        try:
            for task_id in self.in_process.task_ids():
                self.client.cancel(task_id, f"its in-process arguments ended with manager "
                                            f"{self.module_executor.name or 'slots'}")
                self.in_process.discard(task_id)
            self.task_scheduler.policies.remove_origins(names)
            self.connection.srem(self.keys.rq_queues_set(), *[self.keys.rq_queue(q) for q in names])
        except redis.RedisError as exc:
            log.warning("could not cancel this manager's pinned tasks at shutdown: %s", exc)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()
