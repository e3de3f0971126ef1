"""Direct execution: ``ModuleExecutor.execute_task(task, module)`` a call run here, not on the cluster.

The call runs in this process, on a pool of ``max_workers`` threads, and its outcome
comes back through a ``concurrent.futures.Future``. Nothing goes through Redis: the
module is the object handed in (registered or not), so arguments need not be JSON.
Tasks meant for the cluster go through ``ConcurrentModuleManager.submit_task``.
"""
from __future__ import annotations

import heapq
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from .core.types import ModuleState, ModuleTask
from .errors import SecurityError, TaskTimeoutError
from .security import SecurityValidator

log = logging.getLogger("piano_dist.executor")


class DirectRunner:
    """A thread pool, a pause gate and a deadline watchdog for directly executed tasks."""

    def __init__(self, max_workers: int, max_queue_size: int):
        self.max_workers = max(1, max_workers)
        self.max_queue_size = max_queue_size
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Condition()
        self._paused = False
        self._closed = False
        self._futures: dict[str, Future] = {}  # not ended (a timed-out call's thread may run on)
        self._waiting: set[str] = set()  # not started
        self._running: set[str] = set()
        self._deadlines: list[tuple[float, int, str, Future]] = []
        self._seq = 0
        self._watchdog: threading.Thread | None = None
        self.executed = self.failed = self.timed_out = 0
        self.total_time = 0.0
        self.peak_running = 0

    # --- submitting -----------------------------------------------------------------
    def submit(self, task: ModuleTask, module: Any) -> Future:
        if not isinstance(task, ModuleTask):
            raise TypeError(f"execute_task needs a ModuleTask, not {type(task).__name__}")
        SecurityValidator.validate_method_name(task.method_name)
        method = getattr(module, task.method_name, None)
        if method is None or not callable(method):
            raise SecurityError(f"{type(module).__name__} has no method {task.method_name!r} to run "
                                f"(task {task.task_id})")
        timeout = task.max_duration
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not timeout > 0):
            raise SecurityError(f"max_duration must be a positive number of seconds, not {timeout!r}")
        args = tuple(task.args or ())
        kwargs = dict(task.kwargs or {})
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the executor has been shut down")
            waiting = len(self._waiting)
            if self.max_queue_size and waiting >= self.max_queue_size:
                raise RuntimeError(f"executor queue is full: {waiting} tasks waiting, max_queue_size is "
                                   f"{self.max_queue_size}; task {task.task_id} not run")
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="piano-direct")
            self._futures[task.task_id] = future
            self._waiting.add(task.task_id)
        task.state = ModuleState.QUEUED
        future.add_done_callback(lambda f, tid=task.task_id: self._forget(tid, f))
        self._pool.submit(self._run, task, method, args, kwargs, future, timeout)
        return future

    def _run(self, task: ModuleTask, method, args, kwargs, future: Future, timeout) -> None:
        with self._lock:
            while self._paused and not self._closed:
                self._lock.wait(0.5)
        started = future.set_running_or_notify_cancel()
        with self._lock:
            self._waiting.discard(task.task_id)
        if not started:
            task.state = ModuleState.CANCELLED
            return
        with self._lock:
            self._running.add(task.task_id)
            self.peak_running = max(self.peak_running, len(self._running))
            if timeout:
                self._seq += 1
                heapq.heappush(self._deadlines, (time.monotonic() + timeout, self._seq, task.task_id, future))
                self._start_watchdog()
        task.state = ModuleState.RUNNING
        task.started_at = time.time()
        started = time.monotonic()
        try:
            value = method(*args, **kwargs)
        except BaseException as exc:  # the module's failure is the task's outcome
            self._settle(task, future, started, error=exc)
        else:
            self._settle(task, future, started, value=value)
        finally:
            with self._lock:
                self._running.discard(task.task_id)
                self._lock.notify_all()

    def _settle(self, task: ModuleTask, future: Future, started: float, value: Any = None,
                error: BaseException | None = None) -> None:
        elapsed = time.monotonic() - started
        with self._lock:
            if future.done():  # timed out already: a late result is dropped
                log.info("late outcome of timed-out task %s discarded", task.task_id)
                return
            self.executed += 1
            self.total_time += elapsed
            if error is not None:
                self.failed += 1
        task.completed_at = time.time()
        if error is None:
            task.state, task.result = ModuleState.COMPLETED, value
            future.set_result(value)
        else:
            task.state, task.error = ModuleState.ERROR, f"{type(error).__name__}: {error}"
            future.set_exception(error)

    # --- deadlines ------------------------------------------------------------------
    def _start_watchdog(self) -> None:
        if self._watchdog is None:
            self._watchdog = threading.Thread(target=self._watch, name="piano-direct-deadlines", daemon=True)
            self._watchdog.start()
        self._lock.notify_all()

    def _watch(self) -> None:
        with self._lock:
            while not (self._closed and not self._deadlines):
                if not self._deadlines:
                    self._lock.wait(1.0)
                    continue
                deadline, _, task_id, future = self._deadlines[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._lock.wait(wait)
                    continue
                heapq.heappop(self._deadlines)
                if not future.done():
                    self.executed += 1
                    self.timed_out += 1
                    future.set_exception(TaskTimeoutError(
                        f"task {task_id} exceeded its max_duration (its thread runs on; the result is dropped)"))

    # --- control --------------------------------------------------------------------
    def _forget(self, task_id: str, future: Future) -> None:
        with self._lock:
            if self._futures.get(task_id) is future:
                del self._futures[task_id]
                if future.cancelled():
                    self._waiting.discard(task_id)
            self._lock.notify_all()

    def cancel(self, task_id: str) -> bool:
        """Only before the task started (a running call cannot be stopped)."""
        with self._lock:
            future = self._futures.get(task_id)
        return bool(future is not None and future.cancel())

    def pause(self) -> None:
        with self._lock:
            self._paused = True

    def resume(self) -> None:
        with self._lock:
            self._paused = False
            self._lock.notify_all()

    @property
    def paused(self) -> bool:
        return self._paused

    def counts(self) -> tuple[int, int]:
        """(waiting, running) direct tasks."""
        with self._lock:
            return len(self._waiting), len(self._running)

    def wait_all(self, timeout: float | None = None) -> list[str]:
        """Wait until no direct task is waiting or running; return the ids that ended meanwhile."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            pending = dict(self._futures)
            while self._futures:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._lock.wait(remaining if remaining is not None else 1.0)
        return [tid for tid, f in pending.items() if f.done()]

    def shutdown(self, timeout: float) -> None:
        """Refuse new tasks, cancel those not started, give running ones ``timeout`` seconds."""
        with self._lock:
            self._closed = True
            self._paused = False
            futures = list(self._futures.values())
            self._lock.notify_all()
        for future in futures:
            future.cancel()
        self.wait_all(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
