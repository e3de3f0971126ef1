"""The claimer: a worker's dispatch loop, and the task a claim hands to a slot.

It waits until a slot and a CPU lane are free, claims as many tasks as are free in one
task_claim call (the cluster's scheduling policy decides which, in the script), hands
each to the engine, and when nothing is queued waits on the wake-up list.
"""
from __future__ import annotations

import json
import logging
import math
import threading
from dataclasses import dataclass
from typing import Callable

import redis

from ..errors import InvalidArgument
from ..security import SecurityValidator
from .loader import ModuleLoader
from .task_scripts import ClaimRow, TaskScripts

log = logging.getLogger("piano_dist.engine")

# Tasks one claim call may set aside (held, parked, stale) before it lets Redis go.
CLAIM_SET_ASIDE = 500


@dataclass
class ClaimedTask:
    task_id: str
    module: str
    method: str
    args: list
    kwargs: dict
    timeout: float | None
    attempt: int
    origin: str
    agent_id: str | None
    registration: bytes | None = None  # the module's registration as the claim read it
    problem: str | None = None  # why the task record cannot run (it ends failed)
    keep_result: bool = True  # False: its value is not kept, so the worker does not send it

    @classmethod
    def from_row(cls, row: ClaimRow) -> "ClaimedTask":
        """A claimed task from the claim script's row. The row's id and attempt come from
        the script; everything else was read from the task's hash, so a malformed value
        makes the task fail (``problem``) rather than the worker."""
        task = cls(row.task_id, row.module, row.method, [], {}, None, row.attempt, row.origin, row.agent or None,
                   row.registration, keep_result=row.keep_result)
        try:
            task.args, task.kwargs = _decode_payload(row.payload)
            task.timeout = _decode_timeout(row.timeout)
        except ValueError as exc:
            task.problem = f"the task's stored record is corrupt: {exc}"
        return task


def _decode_payload(text: str) -> tuple[list, dict]:
    if not text:
        return [], {}
    try:
        return SecurityValidator.decode_execution_args(text)
    except InvalidArgument as exc:
        raise ValueError(str(exc)) from None


def _decode_timeout(text: str) -> float | None:
    if not text:
        return None
    timeout = float(text)
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"its timeout {text!r} is not a positive number of seconds")
    return timeout


class Claimer:
    def __init__(self, tasks: TaskScripts, connection: redis.Redis, queue_keys: list[str], worker_name: str,
                 lease_ms: int, loader: ModuleLoader, stop_claiming: threading.Event,
                 free_slots: Callable[[], int], launch: Callable[[ClaimedTask], None],
                 idle: Callable[[], bool], wait_slot_freed: Callable[[float], None]):
        """``free_slots()`` blocks until a slot and a lane are free (or claiming stops) and
        says how many; ``launch`` starts a claimed task in a slot; ``idle()``: no task
        is running; ``wait_slot_freed(timeout)`` waits for a slot to free."""
        self.tasks = tasks
        self.connection = connection
        self.queue_keys = queue_keys
        self.worker_name = worker_name
        self.lease_ms = lease_ms
        self.loader = loader
        self._stop_claiming = stop_claiming
        self._free_slots = free_slots
        self._launch = launch
        self._idle = idle
        self._wait_slot_freed = wait_slot_freed

    def loop(self, burst: bool = False) -> None:
        """Claim until claiming stops (``burst``: also when nothing is queued and no task
        runs)."""
        blocking = self.connection  # BLPOP takes a pooled connection of its own
        while not self._stop_claiming.is_set():
            free = self._free_slots()
            if self._stop_claiming.is_set():
                break
            try:
                rows = self.tasks.claim(self.queue_keys, self.worker_name, self.lease_ms, free,
                                        json.dumps(self.loader.unloadable()), CLAIM_SET_ASIDE)
            except redis.RedisError as exc:
                self._redis_down(exc)
                continue
            if rows:
                for row in rows:
                    self._launch(ClaimedTask.from_row(row))
                continue
            if burst:
                if self._idle():
                    break
                self._wait_slot_freed(0.2)
                continue
            try:
                blocking.blpop([self.tasks.keys.wakeup], timeout=1)
            except redis.RedisError as exc:
                self._redis_down(exc)

    def _redis_down(self, exc: Exception) -> None:
        """A claim or wake-up wait failed after the client's retry policy gave up (Redis
        away longer than its deadline) or with an error no retry cures. A worker never
        exits for that: it says so and tries again; a lost claim reply costs at most a
        lease (the task it claimed is swept back)."""
        log.warning("worker %s: Redis call failed (%s: %s); trying again", self.worker_name,
                    type(exc).__name__, exc)
        self._stop_claiming.wait(1.0)
