"""A small cluster for the scheduling tests: a manager that submits (no slots of its
own) and two worker processes with several slots each, following the cluster policy."""
from __future__ import annotations

import contextlib
import threading

import redis
from support.scheduling_modules import Timed
from support.waiting import wait_until
from support.workers import WorkerProcess

from piano_dist import ConcurrentModuleManager
from piano_dist.executor import ModuleExecutor

PROCESSES = 2
SLOTS = 3  # per process: 6 slots in all


@contextlib.contextmanager
def cluster(redis_url: str, policy, modules: tuple[str, ...], slots: int = SLOTS, start_workers: bool = True):
    manager = ConcurrentModuleManager(max_workers=0, max_queue_size=0, redis_url=redis_url,
                                      scheduling_policy=policy)
    for name in modules:
        manager.register_module(name, Timed())
    workers: list[WorkerProcess] = []

    def start() -> None:
        workers.extend(WorkerProcess(redis_url, concurrency=slots) for _ in range(PROCESSES))
        live = ModuleExecutor(0, connection=manager.connection)
        wait_until(lambda: len(live.worker_metrics()) >= PROCESSES, timeout=20, message="workers up")

    manager.start_workers = start
    if start_workers:
        start()
    try:
        yield manager
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.stop()
        manager.shutdown()


class RunningSampler(threading.Thread):
    """Samples the scheduler's per-module running counts and the tasks' own live counts
    every few milliseconds, keeping the maximum seen per module."""

    def __init__(self, redis_url: str, modules: tuple[str, ...], running_key: str, interval: float = 0.003):
        super().__init__(daemon=True)
        self.r = redis.Redis.from_url(redis_url)
        self.modules, self.running_key, self.interval = modules, running_key, interval
        self.max_running = {m: 0 for m in modules}
        self.max_live = {m: 0 for m in modules}
        self.max_total = 0
        self.samples = 0
        self.busy_samples = 0  # samples that saw a task running
        self._halt = threading.Event()

    def run(self) -> None:
        from support.scheduling_modules import live_key

        while not self._halt.is_set():
            with self.r.pipeline(transaction=False) as pipe:
                pipe.hmget(self.running_key, *self.modules)
                pipe.mget([live_key(m) for m in self.modules])
                running, live = pipe.execute()
            for m, a, b in zip(self.modules, running, live):
                self.max_running[m] = max(self.max_running[m], int(a or 0))
                self.max_live[m] = max(self.max_live[m], int(b or 0))
            total = sum(int(a or 0) for a in running)
            self.max_total = max(self.max_total, total)
            self.samples += 1
            self.busy_samples += total > 0
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)
