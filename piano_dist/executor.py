"""ModuleExecutor: the manager's in-process execution slots, and cluster-wide metrics.

A facade over the cluster: it does not own the execution of tasks (workers anywhere,
and these slots, claim them from the shared queues); its name and methods are the
original framework's (docs/compat.md). With ``max_workers > 0`` the manager runs this
many slots in its own process, on the same queues as the worker processes, using the
module instances it registered. The slots register as an RQ worker, so ``rq info`` and
the dashboard list them.

``execute_task(task, module)`` is a direct call: it runs one method of the
object handed in on this process's threads and returns a Future (see
direct_execution.py); it needs no registration and no Redis round trip.
"""
from __future__ import annotations

import threading
import time
from typing import Any

import redis

from concurrent.futures import Future

from .arguments import is_whole
from .config import Timing
from .connection import get_connection
from .core.types import ExecutorMetrics, ModuleTask
from .direct_execution import DirectRunner
from .in_process_args import InProcessArguments
from .keys import Keys


class ModuleExecutor:
    def __init__(self, max_workers: int = 4, max_queue_size: int = 100, enable_monitoring: bool = True,
                 cleanup_interval: float = 300, *, redis_url: str | None = None,
                 connection: redis.Redis | None = None, prefix: str | None = None,
                 local_modules: dict | None = None, name: str | None = None, timing: Timing | None = None,
                 in_process: InProcessArguments | None = None):
        """``in_process``: the arguments of tasks pinned to this process; its slots also
        serve that queue group (see piano_dist/in_process_args.py). ``enable_monitoring``
        and ``cleanup_interval`` are accepted for the original API and not used: workers
        always publish their metrics, and leases replace cleanup sweeps."""
        if not is_whole(max_workers) or max_workers < 0:
            raise ValueError(f"max_workers must be a non-negative integer, not {max_workers!r}")
        self.max_workers = max_workers
        self.max_queue_size = max_queue_size
        self.connection = get_connection(redis_url, connection)
        self.keys = Keys(prefix)
        self.timing = timing or Timing()
        self.local_modules = local_modules if local_modules is not None else {}
        self.in_process = in_process
        self._name = name
        self.worker = None
        self._started = False
        self._shutdown = False
        self._lock = threading.Lock()
        self._direct = DirectRunner(max_workers, max_queue_size)

    # --- direct execution (direct_execution.py) ---------------------------------------
    def execute_task(self, task: ModuleTask, module: Any) -> Future:
        """Run ``module.<task.method_name>(*task.args, **task.kwargs)`` in this process and
        return its Future. ``task.max_duration`` makes the Future raise TaskTimeoutError at
        the deadline (the call's thread runs on; its result is dropped). The task's
        ``state``, ``started_at``, ``completed_at``, ``result`` and ``error`` are kept up to
        date. RuntimeError after shutdown or when ``max_queue_size`` calls already wait;
        SecurityError when the module has no such public method."""
        return self._direct.submit(task, module)

    def cancel_task(self, task_id: str) -> bool:
        """Cancel a task given to execute_task that has not started (a running call cannot be stopped from outside)."""
        return self._direct.cancel(task_id)

    def wait_for_completion(self, timeout: float | None = None) -> list[str]:
        """Block until every task given to execute_task has ended (or ``timeout``); return
        the ids that ended meanwhile."""
        return self._direct.wait_all(timeout)

    # --- lifecycle ----------------------------------------------------------------
    def start(self) -> None:
        """Start the in-process slots (no-op with max_workers=0 or when already started)."""
        with self._lock:
            if self._started or self.max_workers == 0 or self._shutdown:
                return
            from .workers.piano_worker import PianoWorker, default_worker_name

            queues = None
            if self.in_process is not None:
                # Pinned tasks first within each level, strict priority between levels.
                own = self.keys.grouped(self.in_process.queue_group).queue_names
                queues = [q for pair in zip(own, self.keys.queue_names) for q in pair]
            self.worker = PianoWorker(queues, connection=self.connection, prefix=self.keys.prefix,
                                      concurrency=self.max_workers, local_modules=self.local_modules,
                                      name=self._name or default_worker_name("manager"), timing=self.timing)
            if self.in_process is not None:
                self.worker.engine.argument_source = self.in_process.resolve
            self.worker.register_birth()
            self.worker.engine.tick_hooks.append(self.worker._heartbeat_tick)
            self.worker.engine.start()
            self._started = True

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop claiming, let running tasks finish within ``timeout``, give the rest back."""
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = True
            worker = self.worker
        self._direct.shutdown(timeout)
        if worker is not None:
            worker.engine.stop(grace=timeout)
            try:
                worker.register_death()
            except redis.RedisError:
                pass  # Redis gone: the worker key expires by itself

    def pause(self) -> None:
        """Stop starting tasks in this process (slots and direct calls); running ones go on."""
        self._direct.pause()
        if self.worker:
            self.worker.engine.pause()

    def resume(self) -> None:
        self._direct.resume()
        if self.worker:
            self.worker.engine.resume()

    def is_paused(self) -> bool:
        return self._direct.paused

    @property
    def name(self) -> str | None:
        return self.worker.name if self.worker else None

    # --- figures ------------------------------------------------------------------
    def get_active_task_count(self) -> int:
        """Tasks running in this process: in its slots and direct calls."""
        return (len(self.worker.engine.active) if self.worker else 0) + self._direct.counts()[1]

    def get_queue_size(self) -> int:
        """The cluster's waiting tasks plus direct calls waiting here for a thread."""
        return int(self.connection.hget(self.keys.stats, "backlog") or 0) + self._direct.counts()[0]

    def get_metrics(self) -> ExecutorMetrics:
        """Cluster-wide: every worker process's executions (plus this executor's direct
        calls, which the cluster does not see), and the peak memory of live workers."""
        stats = {k.decode(): int(v) for k, v in self.connection.hgetall(self.keys.stats).items()}
        workers = self.worker_metrics()
        direct = self._direct
        executed = stats.get("tasks_executed", 0) + direct.executed
        total_s = stats.get("execution_ms", 0) / 1000.0 + direct.total_time
        slots = sum(w.get("slots", 0) for w in workers) or 1
        return ExecutorMetrics(
            tasks_executed=executed,
            tasks_failed=stats.get("failed", 0) + direct.failed,
            tasks_timed_out=stats.get("timed_out", 0) + direct.timed_out,
            total_execution_time=total_s,
            average_execution_time=total_s / executed if executed else 0.0,
            peak_memory_usage=max((w.get("peak_memory_usage", 0) for w in workers), default=0),
            peak_thread_count=max([w.get("peak_thread_count", 0) for w in workers] + [direct.peak_running]),
            current_load=sum(w.get("running", 0) for w in workers) / slots,
            last_cleanup=None,
        )

    def worker_metrics(self) -> list[dict[str, Any]]:
        names = [k.decode()[len(self.keys.worker_metrics_prefix):-len(":metrics")]
                 for k in self.connection.scan_iter(match=self.keys.worker_metrics("*"), count=1000)]
        with self.connection.pipeline(transaction=False) as pipe:
            for n in names:
                pipe.hgetall(self.keys.worker_metrics(n))
            rows = pipe.execute()
        out = []
        now = time.time()
        for name, row in zip(names, rows):
            data = {k.decode(): v.decode() for k, v in row.items()}
            if not data or now - float(data.get("heartbeat", 0)) > 30:
                continue  # a dead worker's figures still count in the totals, not in the live view
            out.append({"name": name, "slots": int(data.get("slots", 0)), "running": int(data.get("running", 0)),
                        "current_load": float(data.get("current_load", 0)),
                        "peak_memory_usage": int(data.get("peak_memory_usage", 0)),
                        "peak_thread_count": int(data.get("peak_thread_count", 0)),
                        "tasks_executed": int(data.get("tasks_executed", 0)),
                        "tasks_failed": int(data.get("tasks_failed", 0)),
                        "tasks_timed_out": int(data.get("tasks_timed_out", 0))})
        return out

    def get_status_summary(self) -> dict[str, Any]:
        metrics = self.get_metrics()
        return {
            "max_workers": self.max_workers,
            "active_tasks": self.get_active_task_count(),
            "queue_size": self.get_queue_size(),
            "is_paused": self.is_paused(),
            "is_shutdown": self._shutdown,
            "thread_count": threading.active_count(),
            "metrics": {
                "tasks_executed": metrics.tasks_executed,
                "tasks_failed": metrics.tasks_failed,
                "tasks_timed_out": metrics.tasks_timed_out,
                "current_load": metrics.current_load,
                "peak_memory_mb": metrics.peak_memory_usage / 1024 / 1024,
                "peak_threads": metrics.peak_thread_count,
            },
        }

    def get_thread_info(self) -> dict[str, Any]:
        return {"max_workers": self.max_workers, "active_threads": self.get_active_task_count(),
                "peak_active_threads": max(self.worker.engine.peak_threads if self.worker else 0,
                                           self._direct.peak_running),
                "process_threads": threading.active_count()}

    def __enter__(self):
        # A context for direct calls (docs/compat.md). Slots on the cluster's queues start
        # only through start() (the manager calls it), never as a side effect of `with`.
        return self

    def __exit__(self, *exc):
        self.shutdown()
