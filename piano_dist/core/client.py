"""TaskClient: submit, inspect, wait for and cancel tasks. No execution happens here.

The manager composes it; the CLI uses it directly. Specs are checked and encoded by
:mod:`.task_spec`; every state change is one task script, run through
:mod:`.task_scripts`, so a refused submission stores nothing.
"""
from __future__ import annotations

import json
import os
import threading
import time
from typing import Any, Callable, Iterable

import redis

from ..config import Timing
from ..errors import InvalidArgument, QueueFullError, TaskFailedError, TaskTimeoutError, UnknownTaskError
from ..keys import PRIORITY_LEVELS, Keys
from ..replication import pipelined, replicas_to_wait
from ..retry_policy import is_transient
from ..scripts import ScriptSet
from .events import EventBus
from .listing import epoch_of
from .registry import ModuleRegistry
from .task_scripts import Refusal, TaskScripts
from .task_spec import MAX_DEPENDENCIES, TASK_ID, BatchCache, PreparedTask, TaskEncoder, TaskSpec  # noqa: F401
from .types import Priority, TaskStatus

_STATUS_FIELDS = ("piano_status", "piano_module", "piano_method", "piano_priority", "created_at",
                  "started_at", "ended_at", "worker_name", "piano_result", "piano_error",
                  "piano_attempts", "piano_wait_reason", "piano_timeout", "piano_agent",
                  "piano_cancel", "piano_last_loss", "piano_model_ms", "piano_model_calls", "origin")
# Tasks per task_submit_many call: Redis is busy a few ms per call. A submit_many of at
# most this many specs is one script, so no task of it can end before all are stored.
SUBMIT_CHUNK = 500
_EXISTS_CHUNK = 1000  # keys per EXISTS of submit_many's pre-check


class TaskClient:
    def __init__(self, connection: redis.Redis, keys: Keys | None = None, max_queue_size: int = 0,
                 task_timeout: float | None = None, timing: Timing | None = None,
                 require_registration: bool = True):
        """``require_registration=False``: tasks may name any (valid) module and method;
        for a standalone TaskScheduler, whose tasks no worker runs."""
        self.require_registration = require_registration
        self.connection = connection
        self.keys = keys or Keys()
        self.max_queue_size = max_queue_size
        self.timing = timing or Timing()
        self.scripts = ScriptSet(connection)
        self.tasks = TaskScripts(connection, self.keys, self.timing)
        self.registry = ModuleRegistry(connection, self.keys)
        self.encoder = TaskEncoder(self.registry, self.keys, self.timing, connection.get_encoder(), task_timeout,
                                   require_registration)
        self.events = EventBus(connection, self.keys)
        self.events.task_callback_resolver = self._terminal_status
        self.queue_names = self.keys.queue_names

    @property
    def task_timeout(self) -> float | None:
        """The timeout of tasks whose spec gives none (None: no timeout)."""
        return self.encoder.task_timeout

    @task_timeout.setter
    def task_timeout(self, value: float | None) -> None:
        self.encoder.task_timeout = value

    # --- submission ---------------------------------------------------------------
    def _refused(self, refusal: Refusal, task_id: str) -> Exception:
        """The exception for a refusal; a full queue is also announced (overload event)."""
        if refusal.code == "QUEUE_FULL":
            self.events.publish_overload({"backlog": int(refusal.detail), "limit": self.max_queue_size})
        return refusal.error(task_id, self.max_queue_size)

    def _submit_one(self, task: PreparedTask, limit: int, submission: str) -> dict[int, Refusal]:
        submit = self.tasks.submit
        if replicas_to_wait()[0]:  # WAIT must ride the write's connection: a pipeline
            [result] = pipelined(self.connection, lambda pipe: submit([task], limit, submission, client=pipe),
                                 "submit")
            if isinstance(result, redis.ResponseError) and is_transient(result):
                result = submit([task], limit, submission)  # not run (BUSY, OOM, …): again, under the retry policy
            if isinstance(result, Exception):
                raise result
        else:
            result = submit([task], limit, submission)
        return self.tasks.refusals(result, [task], submission)

    def submit(self, spec: TaskSpec, queue_group: str | None = None) -> str:
        """``queue_group``: queue the task on that group's queues instead of the cluster's."""
        task = self.encoder.prepare(spec, queue_group=queue_group)
        if task.callback is not None:
            self.events.add_task_callback(task.task_id, task.callback)
        submission = os.urandom(4).hex()  # tells this call's tasks from another submitter's
        try:
            refusals = self._submit_one(task, self.max_queue_size, submission)
            if (refusals and refusals[1].code == "QUEUE_FULL"
                    and self.tasks.recount_backlog() < self.max_queue_size):
                # The counter had drifted above the real backlog: try again with the true one,
                # as a new call (a repeat of the same one is answered with its first reply).
                submission = os.urandom(4).hex()
                refusals = self._submit_one(task, self.max_queue_size, submission)
        except redis.ResponseError:
            self.events._task_callbacks.pop(task.task_id, None)
            raise
        if refusals:
            self.events._task_callbacks.pop(task.task_id, None)
            raise self._refused(refusals[1], task.task_id) from None
        return task.task_id

    def submit_many(self, specs: Iterable[Any]) -> list[str]:
        """Validate every spec first, then submit them all in one pipelined round trip.

        A spec may depend on an earlier spec of the same batch by its id (give
        ``task_id``). If any spec is invalid, nothing is submitted.
        """
        cache = BatchCache()
        prepared = [self.encoder.prepare(TaskSpec.coerce(s, i), cache) for i, s in enumerate(specs)]
        if not prepared:
            return []
        if self.max_queue_size:
            backlog = int(self.connection.hget(self.keys.stats, "backlog") or 0)
            if backlog + len(prepared) > self.max_queue_size:
                backlog = self.tasks.recount_backlog()  # the counter may have drifted above it
            if backlog + len(prepared) > self.max_queue_size:
                self.events.publish_overload({"backlog": backlog, "limit": self.max_queue_size})
                raise QueueFullError(
                    f"queue is full: {backlog} tasks waiting + {len(prepared)} submitted exceeds "
                    f"max_queue_size {self.max_queue_size}; nothing submitted")
        ids = [t.task_id for t in prepared]
        position: dict[str, int] = {}
        for i, tid in enumerate(ids):
            if tid in position:
                raise InvalidArgument(f"task id {tid} appears twice in the batch (specs #{position[tid]} "
                                      f"and #{i}); nothing submitted")
            position[tid] = i
        # Store-side refusals (existing id, parent not yet stored) would come after the
        # earlier specs were written: find them all before writing anything.
        for i, t in enumerate(prepared):
            for p in t.parents:
                if p in position and position[p] >= i:
                    raise UnknownTaskError(f"dependency {p} of task {t.task_id} is not submitted before it "
                                           f"in the batch (list parents first; dependencies cannot form "
                                           f"a cycle); nothing submitted")
        known = [p for t in prepared for p in t.parents if p not in position]
        distinct = list(dict.fromkeys(known))
        rq_job = self.keys.rq_job
        # One EXISTS counts many keys: the ids must count 0 (ids are one namespace per
        # Redis). Outside parents must exist and be this deployment's (their queue).
        owns = self.keys.owns_origin
        with self.connection.pipeline(transaction=False) as pipe:
            for start in range(0, len(ids), _EXISTS_CHUNK):
                pipe.exists(*[rq_job(tid) for tid in ids[start:start + _EXISTS_CHUNK]])
            for p in distinct:
                pipe.hget(rq_job(p), "origin")
            replies = pipe.execute()
        id_chunks = -(-len(ids) // _EXISTS_CHUNK)
        counts, origins = replies[:id_chunks], dict(zip(distinct, replies[id_chunks:]))
        if any(counts) or not all(owns(origins[p]) for p in distinct):
            # Name the first offender, as a key-by-key check would.
            with self.connection.pipeline(transaction=False) as pipe:
                for tid in ids:
                    pipe.exists(rq_job(tid))
                found = pipe.execute()
            clash = [tid for tid, ok in zip(ids, found) if ok]
            if clash:
                raise InvalidArgument(f"task id {clash[0]} already exists; nothing submitted")
            missing = [p for p in known if not owns(origins[p])]
            if missing:
                raise UnknownTaskError(f"dependency {missing[0]} is not a known task; nothing submitted")
        for t in prepared:
            if t.callback is not None:
                self.events.add_task_callback(t.task_id, t.callback)
        submit = self.tasks.submit
        submission = os.urandom(4).hex()  # tells this call's tasks from another submitter's
        chunks = [prepared[start:start + SUBMIT_CHUNK] for start in range(0, len(prepared), SUBMIT_CHUNK)]

        def fill(pipe) -> None:
            for chunk in chunks:
                submit(chunk, 0, submission, client=pipe)

        results = pipelined(self.connection, fill, f"submit of {len(prepared)} task(s)")
        for start, chunk, result in zip(range(0, len(prepared), SUBMIT_CHUNK), chunks, results):
            if isinstance(result, redis.ResponseError) and is_transient(result):
                # Redis did not run this chunk (BUSY, OOM, …): send it again on its own,
                # under the client's retry policy.
                result = submit(chunk, 0, submission)
            if isinstance(result, redis.ResponseError):
                raise result
            refusals = self.tasks.refusals(result, chunk, submission)
            if refusals:
                first = min(refusals)
                raise self._refused(refusals[first], prepared[start + first - 1].task_id) from None
        return ids

    # --- inspection ---------------------------------------------------------------
    def get_status(self, task_id: str) -> dict | None:
        """The task's status, or None for an unknown id or another deployment's task
        (task hashes are RQ's, unprefixed: a task is ours when its queue is)."""
        if not isinstance(task_id, str):
            return None
        return self._status_from(task_id, self.connection.hmget(self.keys.rq_job(task_id), _STATUS_FIELDS),
                                 self.keys.owns_origin)

    def get_statuses(self, task_ids: list[str]) -> dict[str, dict | None]:
        with self.connection.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.hmget(self.keys.rq_job(task_id), _STATUS_FIELDS)
            rows = pipe.execute()
        return {tid: self._status_from(tid, row, self.keys.owns_origin) for tid, row in zip(task_ids, rows)}

    @staticmethod
    def _status_from(task_id: str, row: list, owns_origin: Callable[[Any], bool]) -> dict | None:
        values = dict(zip(_STATUS_FIELDS, row))
        if values["piano_status"] is None or not owns_origin(values["origin"]):
            return None
        text = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in values.items()}
        priority = int(text["piano_priority"] or Priority.NORMAL)
        status = {
            "task_id": task_id,
            "status": text["piano_status"],
            "module": text["piano_module"],
            "method": text["piano_method"],
            "priority": Priority(priority).name.lower(),
            "created_at": epoch_of(values["created_at"]),
            "started_at": epoch_of(values["started_at"]),
            "ended_at": epoch_of(values["ended_at"]),
            "worker": text["worker_name"] or None,
            "attempts": int(text["piano_attempts"] or 0),
            "timeout": float(text["piano_timeout"]) if text["piano_timeout"] else None,
            "agent": text["piano_agent"] or None,
        }
        if text["piano_status"] == TaskStatus.COMPLETED.value:
            status["result"] = json.loads(text["piano_result"]) if text["piano_result"] else None
        if text["piano_error"] and text["piano_status"] != TaskStatus.COMPLETED.value:
            status["error"] = text["piano_error"]
        if text["piano_wait_reason"] and text["piano_status"] in ("queued", "deferred"):
            status["waiting_because"] = text["piano_wait_reason"]
        if text["piano_cancel"] == "1" and text["piano_status"] == "running":
            status["cancel_requested"] = True
        if text["piano_model_ms"]:
            status["model_seconds"] = float(text["piano_model_ms"]) / 1000
            status["model_calls"] = int(text["piano_model_calls"] or 0)
        if text["piano_last_loss"]:
            status["last_loss"] = text["piano_last_loss"]
        return status

    def _terminal_status(self, task_id: str) -> dict | None:
        status = self.get_status(task_id) or self._ended_status(task_id)
        return status if status and TaskStatus(status["status"]).is_terminal else None

    def _ended_status(self, task_id: str) -> dict | None:
        """The status of a task whose record is already gone (a result TTL of 0, or one
        that ran out), as far as its "finished" event told: no result, since none was kept."""
        ended = self.events.ended(task_id)
        if ended is None or ended.get("status") not in {s.value for s in TaskStatus}:
            return None
        status = {"task_id": task_id, "status": ended["status"], "module": ended.get("module"),
                  "record_expired": True}
        if ended.get("error") and ended["status"] != TaskStatus.COMPLETED.value:
            status["error"] = ended["error"]
        return status

    def group_progress(self, group: str) -> dict[str, int]:
        """How many tasks of a group (``TaskSpec.group``) have ended, by final status:
        one read, however large the group."""
        raw = self.connection.hgetall(self.keys.group(group))
        return {k.decode(): int(v) for k, v in raw.items()}

    # --- waiting ------------------------------------------------------------------
    def wait(self, task_ids: Iterable[str] | str, timeout: float | None = None) -> dict[str, dict]:
        """Block until every task has ended; return their statuses.

        Raises TaskTimeoutError (naming what is unfinished) after ``timeout`` seconds and
        UnknownTaskError for an id that does not exist. Wakes on task events, not polling.
        """
        ids = [task_ids] if isinstance(task_ids, str) else list(task_ids)
        deadline = None if timeout is None else time.monotonic() + timeout
        wake = threading.Event()
        for tid in ids:
            self.events.add_waiter(tid, wake)
        try:
            while True:
                wake.clear()
                statuses = self.get_statuses(ids)
                for tid, st in statuses.items():
                    if st is None:
                        statuses[tid] = self._ended_status(tid)
                missing = [tid for tid, st in statuses.items() if st is None]
                if missing:
                    raise UnknownTaskError(f"unknown task id {missing[0]}")
                unfinished = [tid for tid, st in statuses.items() if not TaskStatus(st["status"]).is_terminal]
                if not unfinished:
                    return statuses
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TaskTimeoutError(
                        f"{len(unfinished)} task(s) unfinished after {timeout}s: {', '.join(unfinished[:5])}")
                # A bounded wait guards against a message lost while the listener reconnects.
                wake.wait(timeout=min(remaining, 5.0) if remaining is not None else 5.0)
        finally:
            for tid in ids:
                self.events.remove_waiter(tid, wake)

    def get_result(self, task_id: str, timeout: float | None = None) -> Any:
        status = self.wait([task_id], timeout)[task_id]
        if status["status"] != TaskStatus.COMPLETED.value:
            raise TaskFailedError(task_id, status["status"], status.get("error"))
        if status.get("record_expired"):
            raise UnknownTaskError(f"task {task_id} completed, but its record is gone: its result TTL "
                                   "(PIANO_RESULT_TTL, or the task's own result_ttl) ran out, or was 0")
        return status.get("result")

    # --- control ------------------------------------------------------------------
    def cancel(self, task_id: str, reason: str = "cancelled by request") -> bool:
        if not isinstance(task_id, str) or not TASK_ID.fullmatch(task_id):
            return False
        return bool(self.tasks.cancel(task_id, reason))

    def pause_module(self, name: str) -> None:
        self.registry.require(name)
        self.connection.sadd(self.keys.paused_modules, name)

    def resume_module(self, name: str) -> int:
        self.registry.require(name)
        return self.tasks.resume_module(name)

    def queued_task_ids(self, module: str | None = None) -> list[str]:
        """Ids of queued and deferred tasks (optionally of one module), in queue order;
        tasks set aside (held for a paused module, parked) are listed too."""
        with self.connection.pipeline(transaction=False) as pipe:
            for q in self.queue_names:
                pipe.lrange(self.keys.rq_queue(q), 0, -1)
                pipe.zrange(self.keys.rq_registry("deferred", q), 0, -1)
            for level in range(1, len(PRIORITY_LEVELS) + 1):
                pipe.lrange(self.keys.held(module, level), 0, -1) if module else pipe.echo("")
            for q, parked_module in self.parked_lists(module):
                pipe.lrange(self.keys.parked(q, parked_module), 0, -1)
            rows = pipe.execute()
        ids = list(dict.fromkeys(i.decode() for row in rows if isinstance(row, list) for i in row))
        if module is None:
            return ids
        with self.connection.pipeline(transaction=False) as pipe:
            for tid in ids:
                pipe.hget(self.keys.rq_job(tid), "piano_module")
            modules = pipe.execute()
        return [tid for tid, m in zip(ids, modules) if m is not None and m.decode() == module]

    def parked_lists(self, module: str | None = None) -> list[tuple[str, str]]:
        """(queue name, module) of every list of parked tasks of this prefix (see Keys.parked)."""
        pairs = []
        for entry in self.connection.smembers(self.keys.parked_index):
            q, _, m = entry.decode().partition(":")
            if q in self.queue_names and (module is None or m == module):
                pairs.append((q, m))
        return sorted(pairs)

    def parked_counts(self) -> dict[str, int]:
        """Parked tasks per queue name."""
        pairs = self.parked_lists()
        with self.connection.pipeline(transaction=False) as pipe:
            for q, m in pairs:
                pipe.llen(self.keys.parked(q, m))
            lengths = pipe.execute()
        counts = dict.fromkeys(self.queue_names, 0)
        for (q, _), n in zip(pairs, lengths):
            counts[q] += n
        return counts

    def unregister_module(self, name: str) -> int:
        """Remove a module cluster-wide and cancel its queued and deferred tasks (running
        ones finish). Returns how many were cancelled."""
        self.registry.require(name)
        waiting = self._module_task_ids(name, ("queued", "deferred"))  # held ones too: read while paused
        self.registry.unregister(name)
        return self.cancel_many(waiting, f"module {name} was unregistered").count("cancelled")

    def cancel_module(self, name: str, reason: str | None = None) -> tuple[int, int]:
        """Cancel every queued (held, waiting to retry) and deferred task of a module and
        ask its running ones to stop. Returns (cancelled, running asked to stop)."""
        self.registry.require(name)
        done = self.cancel_many(self._module_task_ids(name, ("queued", "deferred", "running")),
                                reason or f"module {name}'s tasks were cancelled")
        return done.count("cancelled"), done.count("cancelling")

    def _module_task_ids(self, name: str, statuses: tuple) -> list[str]:
        """The module's tasks in these statuses, newest first: cancelled in that order, a
        child goes before its parent, so each ends `cancelled` itself rather than
        `dependency_failed` through a parent."""
        from .listing import candidate_ids, task_rows

        rows = [r for r in task_rows(self.connection, candidate_ids(self.connection, self.keys, statuses))
                if r["module"] == name and r["status"] in statuses]
        rows.sort(key=lambda r: (r["created_at"] or 0.0, r["task_id"]), reverse=True)
        return [r["task_id"] for r in rows]

    def cancel_many(self, task_ids: list[str], reason: str = "cancelled by request") -> list[str]:
        """Cancel tasks in order, pipelined; per task "cancelled", "cancelling" (running:
        flag set) or "" (unknown or already ended, e.g. through a cancelled parent)."""
        return self.tasks.cancel_many(task_ids, reason)
