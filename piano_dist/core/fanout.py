"""fan_out: run a task's independent sub-calls (model calls, mostly) at once.

Modules overlap their waits on the model — planning several goals, reflecting on
several questions. A pool per module instance (a thousand agents' modules in one
worker) or per call (a thread started per sub-call) costs more than the work; one
pool per process, shared by every slot, grows only as far as sub-calls actually
overlap.

Each batch runs in the caller's context (contextvars: the running task, the fences
of the locks it holds), and the caller works on its own batch too, so a batch always
completes even when every pool thread is busy (no deadlock, however deeply nested).
"""
from __future__ import annotations

import contextvars
import threading
from collections import deque
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
R = TypeVar("R")

MAX_THREADS = 512


class _Batch:
    def __init__(self, fn: Callable, items: list, context: contextvars.Context):
        self.fn = fn
        self.todo = deque(enumerate(items))
        self.results: list = [None] * len(items)
        self.errors: list[tuple[int, BaseException]] = []
        self.remaining = len(items)
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.context = context

    def work(self) -> None:
        """Take items of this batch until none is left (callable from any thread)."""
        while True:
            with self.lock:
                if not self.todo:
                    return
                index, item = self.todo.popleft()
            try:
                # Each item runs in its own copy: one item's context changes stay its own.
                self.results[index] = self.context.copy().run(self.fn, item)
            except BaseException as exc:  # re-raised in the caller, as map() would
                with self.lock:
                    self.errors.append((index, exc))
            with self.lock:
                self.remaining -= 1
                if self.remaining == 0:
                    self.done.set()


class _Pool:
    """Daemon threads that take batches' work; started on demand up to MAX_THREADS."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: deque[_Batch] = deque()
        self._ready = threading.Condition(self._lock)
        self._threads = 0
        self._idle = 0

    def offer(self, batch: _Batch, helpers: int) -> None:
        with self._lock:
            for _ in range(helpers):
                self._jobs.append(batch)
            wanted = helpers - self._idle
            while wanted > 0 and self._threads < MAX_THREADS:
                self._threads += 1
                wanted -= 1
                threading.Thread(target=self._run, name=f"piano-fanout-{self._threads}", daemon=True).start()
            self._ready.notify(helpers)

    def _run(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
                while not self._jobs:
                    self._ready.wait()
                self._idle -= 1
                batch = self._jobs.popleft()
            batch.work()

    @property
    def threads(self) -> int:
        return self._threads


_pool = _Pool()


def fan_out(fn: Callable[[T], R], items: Iterable[T], max_parallel: int | None = None) -> list[R]:
    """``[fn(item) for item in items]``, the items run concurrently (at most
    ``max_parallel`` at once, the caller included), results in order. The first
    exception raised by an item is raised here, after every item has ended."""
    items = list(items)
    if not items:
        return []
    batch = _Batch(fn, items, contextvars.copy_context())
    width = len(items) if max_parallel is None else max(1, min(int(max_parallel), len(items)))
    if width > 1:
        _pool.offer(batch, width - 1)
    batch.work()
    batch.done.wait()
    if batch.errors:
        raise min(batch.errors, key=lambda e: e[0])[1]
    return batch.results


def pool_threads() -> int:
    """Threads the shared pool has started so far (for metrics)."""
    return _pool.threads
