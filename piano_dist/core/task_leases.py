"""The task lease keeper: one supervisor thread per worker.

Each tick it ends tasks past their deadline (a timed-out task ends at once and frees
its slot even while its thread runs on), renews the leases of the running ones and
notices their cancellation requests (task_renew), runs the periodic hooks (worker
metrics, heartbeats) and, once per stalled interval across the cluster, the sweep that
gives tasks of dead workers back (task_sweep).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import redis

from .context import TaskContext
from .task_scripts import TaskScripts

log = logging.getLogger("piano_dist.engine")

METRICS_EVERY = 2.0  # seconds between runs of the periodic hooks


class TaskLeaseKeeper:
    def __init__(self, tasks: TaskScripts, worker_name: str, lease_ms: int, stalled_interval: float,
                 running: Callable[[], list[TaskContext]], on_expired: Callable[[TaskContext, float], None],
                 on_tick: Callable[[], None], stopped: threading.Event):
        """``running()``: the worker's active task contexts; ``on_expired(ctx, now)``: a
        task reached its deadline; ``on_tick()``: every METRICS_EVERY seconds."""
        self.tasks = tasks
        self.worker_name = worker_name
        self.lease_ms = lease_ms
        self.stalled_interval = stalled_interval
        self._running = running
        self._on_expired = on_expired
        self._on_tick = on_tick
        self._stopped = stopped
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._supervise, name="piano-supervisor", daemon=True)
            self._thread.start()

    def join(self, timeout: float = 5) -> None:
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def _supervise(self) -> None:
        tick = min(0.5, self.lease_ms / 4000)
        last_sweep = last_metrics = 0.0
        while not self._stopped.is_set():
            now = time.monotonic()
            try:
                self.enforce_deadlines(now)
                self.renew()
                if now - last_metrics > METRICS_EVERY:
                    self._on_tick()
                    last_metrics = now
                if now - last_sweep > self.stalled_interval:
                    self.sweep()
                    last_sweep = now
            except (redis.ConnectionError, redis.TimeoutError):
                pass  # the dispatcher logs outages; leases resume when Redis returns
            except Exception:
                log.exception("supervisor tick failed")
            self._stopped.wait(self._next_wait(tick))

    def _next_wait(self, tick: float) -> float:
        deadlines = [c.deadline for c in self._running() if c.deadline and not c.timed_out]
        if not deadlines:
            return tick
        return max(0.005, min(tick, min(deadlines) - time.monotonic()))

    def enforce_deadlines(self, now: float) -> None:
        for ctx in [c for c in self._running() if c.deadline and not c.timed_out and c.deadline <= now]:
            self._on_expired(ctx, now)

    def renew(self) -> None:
        running = [c for c in self._running() if not c.timed_out]
        if not running:
            return
        flags = self.tasks.renew(self.worker_name, self.lease_ms, [(c.task_id, c.attempt) for c in running])
        for ctx, flag in zip(running, flags):
            if flag == 1 and not ctx.cancel_event.is_set():
                ctx.cancel_event.set()

    def sweep(self, force: bool = False) -> list[int]:
        return self.tasks.sweep(force)
