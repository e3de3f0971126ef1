"""The outbox: a worker's outcomes, recorded by one thread in pipelined batches.

A slot hands its task's outcome here and goes on; the finisher thread records every
outcome that arrived meanwhile in one round trip (task_finish, through the gateway),
so the slots they free are claimed again together, with the tally of counter
increments the tasks left (model-call accounting) ahead of them. ``after_record`` is
told each reply (or the error that stood for it) once it is in.
"""
from __future__ import annotations

import json
import logging
import threading
import zlib
from base64 import b64encode
from typing import Any, Callable

import redis

from ..replication import pipelined
from ..retry_policy import is_transient
from .context import TaskContext
from .tally import tally_for
from .task_scripts import RunOutcome, TaskScripts

log = logging.getLogger("piano_dist.engine")

BATCH = 200  # outcomes per round trip at most


def rq_result_entry(worker: str, attempt: int, outcome: str, payload: str, value: Any) -> str:
    """RQ's Result stream entry for a run, so `rq`/rq-dashboard show the outcome like any
    job's. A task that returned None has nothing to show: no entry (a stream costs Redis
    about 5 KB and an XADD per task; RQ then shows the job finished, no value)."""
    if outcome == "completed" and value is None:
        return ""
    entry: dict[str, Any] = {"worker_name": worker, "execution_id": str(attempt)}
    if outcome == "completed":
        entry["type"] = 1
        entry["return_value"] = b64encode(payload.encode()).decode()
    else:
        entry["type"] = 2
        entry["exc_string"] = b64encode(zlib.compress(payload.encode())).decode()
    return json.dumps(entry)


class Finisher:
    def __init__(self, tasks: TaskScripts, connection: redis.Redis, stopped: threading.Event,
                 after_record: Callable[[TaskContext, Any, float, str], None]):
        """``stopped``: set when the worker stops (ends the wait between tries of a batch
        while Redis is away); ``after_record(ctx, reply or error, seconds, payload)``."""
        self.tasks = tasks
        self.connection = connection
        self.tally = tally_for(connection)
        self._stopped = stopped
        self._after_record = after_record
        self._outbox: list[tuple[TaskContext, RunOutcome, float]] = []
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = False

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="piano-finisher", daemon=True)
            self._thread.start()

    def put(self, ctx: TaskContext, outcome: RunOutcome, elapsed: float) -> None:
        with self._ready:
            self._outbox.append((ctx, outcome, elapsed))
            self._ready.notify()

    def stop(self, timeout: float = 30) -> None:
        """Record what is in the outbox, then end the thread."""
        with self._ready:
            self._stop = True
            self._ready.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        while True:
            with self._ready:
                while not self._outbox and not self._stop:
                    self._ready.wait(timeout=1.0)
                if not self._outbox:
                    return
                batch, self._outbox = self._outbox[:BATCH], self._outbox[BATCH:]
            results = self._record(batch)
            for (ctx, outcome, elapsed), result in zip(batch, results):
                self._after_record(ctx, result, elapsed, outcome.payload)

    def _record(self, batch: list[tuple[TaskContext, RunOutcome, float]]) -> list:
        """Record a batch of outcomes in one pipelined round trip; never drop one.

        A lost connection is retried by the client's policy (the whole pipeline: a
        finish script that already ran refuses its repeat, since the run no longer owns
        the task). A transient reply to one entry (BUSY, OOM, …) or NOSCRIPT means that
        script did not run: it is sent again on its own, under the same policy. If
        Redis stays away past the policy's deadline, the batch is tried again, for as
        long as it takes; a lease may lapse meanwhile, and then that finish is refused
        and the task runs again.
        """
        finish = self.tasks.finish
        results: list = [None] * len(batch)
        pending = list(range(len(batch)))

        def unsettled(i: int) -> bool:
            return results[i] is None or (isinstance(results[i], Exception)
                                          and (is_transient(results[i])
                                               or isinstance(results[i], redis.exceptions.NoScriptError)))

        carried = self.tally.carry()
        while True:
            try:
                ahead = 0

                def fill(pipe) -> None:
                    nonlocal ahead
                    ahead = carried.queue(pipe)
                    for i in pending:
                        finish(batch[i][1], client=pipe)

                replies = pipelined(self.connection, fill, f"{len(pending)} outcome(s)")
                for i, reply in zip(pending, replies[ahead:]):
                    results[i] = reply
                if any(isinstance(results[i], redis.exceptions.NoScriptError) for i in pending):
                    self.tasks.scripts.load("task_finish")  # Redis restarted: load once, then each again
                for i in pending:
                    if unsettled(i):
                        results[i] = finish(batch[i][1])
                return results
            except redis.RedisError as exc:
                pending = [i for i in pending if unsettled(i)]
                log.warning("could not record %d outcome(s) (%s: %s); trying again", len(pending),
                            type(exc).__name__, exc)
                self._stopped.wait(1.0)
