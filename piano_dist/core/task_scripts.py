"""The one gateway to the task scripts (piano_dist/lua/task_*.lua and module_resume.lua).

Only this module builds their KEYS and ARGV, decodes their replies and turns their
refusals into exceptions; the engine, the client and the scheduler call it. Each
method names the script it runs; the script's header is the contract (what each KEYS
and ARGV entry is, what the reply holds), and a change to one changes the other.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, NamedTuple

import redis

from ..config import Timing
from ..errors import InvalidArgument, QueueFullError, UnknownTaskError
from ..keys import PRIORITY_LEVELS, Keys
from ..replies import as_text
from ..retry_policy import repeat_window
from ..scripts import ScriptSet

if TYPE_CHECKING:
    from .task_spec import PreparedTask

# Stalled tasks one sweep handles, and expired entries it removes per RQ registry (a
# sweep runs every stalled interval).
SWEEP_TASKS = 500
SWEEP_REGISTRY_ENTRIES = 20_000


class ClaimRow(NamedTuple):
    """One task task_claim started: what its hash held (untrusted: the engine checks it)."""

    task_id: str
    module: str
    method: str
    payload: str
    timeout: str
    attempt: int
    origin: str
    agent: str
    registration: bytes  # the module's registration as the claim read it
    keep_result: bool = True  # False: submitted with keep_result=False

    @classmethod
    def decode(cls, row: list) -> "ClaimRow":
        text = [as_text(v, "replace") for v in row[:8]]
        registration = row[8] if len(row) > 8 else None
        keep = as_text(row[9], "replace") != "0" if len(row) > 9 else True
        return cls(text[0], text[1], text[2], text[3], text[4], int(text[5]), text[6], text[7],
                   registration if isinstance(registration, bytes) else (registration or "").encode(), keep)


@dataclass(slots=True)
class RunOutcome:
    """What task_finish records for one run."""

    task_id: str
    worker: str
    attempt: int
    status: str  # completed | failed | timed_out
    payload: str  # the result as JSON (completed) or the error text
    elapsed_ms: int
    rq_result: str = ""  # RQ's result stream entry as a JSON object, or ""
    rq_worker_key: str = ""  # rq:worker:<name> whose counts RQ's tools show, or ""
    model_ms: float | str = ""  # time waiting on the model, "" when the run made no model call
    model_calls: int = 0
    keep_result: bool = True  # False: a completed run's value is not sent (nothing keeps it)

    @property
    def sends_value(self) -> bool:
        """Whether task_finish gets the payload and RQ's result entry: a completed run of a
        task submitted with keep_result=False sends neither (task_finish would drop them)."""
        return self.keep_result or self.status != "completed"


class FinishReply(NamedTuple):
    """task_finish's reply: the task's final status ("retrying" when it went back to
    wait for another attempt) and how many children that released, or "refused" and
    the task's current status (the run no longer owns the task)."""

    status: str
    detail: str

    @property
    def refused(self) -> bool:
        return self.status == "refused"

    @classmethod
    def decode(cls, reply: Any) -> "FinishReply":
        return cls(as_text(reply[0], "replace"), as_text(reply[1], "replace"))


class Refusal(NamedTuple):
    """One task task_submit_many did not store: its code and what the code names."""

    code: str  # UNKNOWN_DEPENDENCY | TASK_EXISTS | QUEUE_FULL
    detail: str

    @classmethod
    def decode(cls, message: Any) -> "Refusal":
        code, _, detail = as_text(message, "replace").partition(" ")
        return cls(code, detail)

    def error(self, task_id: str, limit: int) -> Exception:
        """The exception that tells the submitter why ``task_id`` was not stored."""
        if self.code == "UNKNOWN_DEPENDENCY":
            return UnknownTaskError(f"dependency {self.detail} is not a known task (task {task_id} was not submitted)")
        if self.code == "TASK_EXISTS":
            return InvalidArgument(f"task id {task_id} already exists")
        if self.code == "QUEUE_FULL":
            return QueueFullError(f"queue is full: {self.detail} tasks waiting, max_queue_size is {limit}; "
                                  f"task not submitted")
        return redis.ResponseError(f"{self.code} {self.detail}".rstrip())  # no such refusal: the reply as it came


class TaskScripts:
    """The task scripts, for one connection and one deployment (``keys``)."""

    def __init__(self, connection: redis.Redis, keys: Keys, timing: Timing | None = None):
        self.connection = connection
        self.keys = keys
        self.timing = timing or Timing()
        self.scripts = ScriptSet(connection)

    # --- task_submit_many -----------------------------------------------------------
    def submit(self, tasks: "list[PreparedTask]", limit: int, submission: str, client: Any = None) -> Any:
        """Store ``tasks`` in one call; the raw reply (decode it with :meth:`refusals`).
        With ``client`` (a pipeline) the call is queued there instead."""
        return self.scripts.task_submit_many(args=self.submit_args(tasks, limit, submission), client=client)

    def submit_args(self, tasks: "list[PreparedTask]", limit: int, submission: str) -> list:
        """task_submit_many's ARGV. ``submission`` marks every task of one submit call, so
        that a call repeated after its reply was lost (the retry policy re-sends it)
        recognises its own tasks (see :meth:`refusals`)."""
        from .task_spec import constant_fields

        profiles: dict = {}
        payloads: dict = {}
        records = []
        for t in tasks:
            profile = profiles.setdefault(t.profile, len(profiles) + 1)
            payload = payloads.get(t.payload)
            if payload is None:
                payload = payloads[t.payload] = len(payloads) + 1
            records.append(json.dumps([*t.record[:2], profile, payload, t.parents, t.tolerated, *t.record[2:]],
                                      ensure_ascii=False))
        common = constant_fields(self.timing) + ["piano_submission", submission]
        args: list = [self.keys.prefix, limit, self.timing.result_ttl, submission, repeat_window(),
                      json.dumps(common), json.dumps(list(profiles), ensure_ascii=False), len(payloads)]
        for text, data in payloads:
            args += (text, data)
        args += records
        return args

    def refusals(self, reply: list, tasks: "list[PreparedTask]", submission: str) -> dict[int, Refusal]:
        """task_submit_many's refusals (task number, 1-based → Refusal), less the tasks this
        very submission stored: a repeat of a call whose first run stored them and whose
        reply was lost finds them there."""
        found = {int(reply[i]): Refusal.decode(reply[i + 1]) for i in range(0, len(reply), 2)}
        for number, refusal in list(found.items()):
            if refusal.code == "TASK_EXISTS" and self._stored_by(tasks[number - 1].task_id, submission):
                del found[number]
        return found

    def _stored_by(self, task_id: str, submission: str) -> bool:
        stored = self.connection.hget(self.keys.rq_job(task_id), "piano_submission")
        return stored is not None and as_text(stored, "replace") == submission

    # --- task_backlog ---------------------------------------------------------------
    def recount_backlog(self) -> int:
        """The backlog counted from the lists tasks wait on (also stored as the counter)."""
        return int(self.scripts.task_backlog(keys=self.keys.waiting_lists(), args=[self.keys.prefix]))

    # --- task_claim -----------------------------------------------------------------
    def claim(self, queue_keys: list[str], worker: str, lease_ms: int, count: int, unloadable: str,
              set_aside: int, any_module: bool = False) -> list[ClaimRow]:
        """Start up to ``count`` tasks from ``queue_keys`` (scan order) under ``worker``.
        ``unloadable``: JSON object {module: why this worker cannot load it}."""
        rows = self.scripts.task_claim(
            keys=queue_keys,
            args=[self.keys.prefix, worker, lease_ms, count, unloadable, set_aside, "any" if any_module else ""])
        return [ClaimRow.decode(row) for row in rows or ()]

    # --- task_finish ----------------------------------------------------------------
    def finish(self, outcome: RunOutcome, client: Any = None) -> Any:
        """Record a run's outcome; the raw reply (:meth:`FinishReply.decode` reads it).
        With ``client`` (a pipeline) the call is queued there as a plain EVALSHA
        (``ScriptSet.queue``: a NoScriptError reply means it did not run)."""
        keys, args = [self.keys.rq_job(outcome.task_id)], self._finish_args(outcome)
        if client is not None:
            return self.scripts.queue(client, "task_finish", keys, args)
        return self.scripts.task_finish(keys=keys, args=args)

    def _finish_args(self, o: RunOutcome) -> list:
        payload, rq_result = (o.payload, o.rq_result) if o.sends_value else ("null", "")
        return [self.keys.prefix, o.task_id, o.worker, o.attempt, o.status, payload, self.timing.result_ttl,
                o.elapsed_ms, rq_result, o.rq_worker_key, o.model_ms, o.model_calls]

    # --- task_release ---------------------------------------------------------------
    def release(self, task_id: str, worker: str, attempt: int, why: str, park: bool = False) -> str:
        """Give a running task back without an outcome: "queued", "parked", "cancelled" or
        "refused" (not this run's to give back)."""
        reply = self.scripts.task_release(
            keys=[self.keys.rq_job(task_id)],
            args=[self.keys.prefix, task_id, worker, attempt, why, self.timing.result_ttl, "park" if park else ""])
        return as_text(reply, "replace")

    # --- task_renew -----------------------------------------------------------------
    def renew(self, worker: str, lease_ms: int, runs: Iterable[tuple[str, int]]) -> list[int]:
        """Extend the leases of ``runs`` ((task id, attempt) of ``worker``); one flag per
        run: 0 running, 1 cancel requested, -1 lease lost."""
        args: list = [self.keys.prefix, worker, lease_ms]
        for task_id, attempt in runs:
            args += (task_id, attempt)
        return [int(flag) for flag in self.scripts.task_renew(keys=[self.keys.running], args=args)]

    # --- task_sweep -----------------------------------------------------------------
    def sweep(self, force: bool = False) -> list[int]:
        """Recover stalled runs and release due retries, at most once per stalled
        interval across the cluster (``force``: now). {requeued, abandoned, delayed
        released, registry entries removed, backlog (-1: gated)}."""
        keys = self.keys
        return self.scripts.task_sweep(
            keys=[keys.stalled_sweep_gate, *keys.waiting_lists(), *keys.finished_registries()],
            args=[keys.prefix, int(self.timing.stalled_check_interval * 1000), self.timing.max_attempts,
                  self.timing.result_ttl, SWEEP_TASKS, "force" if force else "", len(keys.queue_names),
                  SWEEP_REGISTRY_ENTRIES])

    # --- task_cancel ----------------------------------------------------------------
    def cancel(self, task_id: str, reason: str, client: Any = None) -> Any:
        """Cancel one task: "cancelled", "cancelling" (running: flag set) or "" (unknown,
        another deployment's, or ended). With ``client`` (a pipeline) the call is queued
        there and the raw reply comes from its execute()."""
        reply = self.scripts.task_cancel(keys=[self.keys.rq_job(task_id)],
                                         args=[self.keys.prefix, task_id, self.timing.result_ttl, reason],
                                         client=client)
        return reply if client is not None else as_text(reply, "replace")

    def cancel_many(self, task_ids: list[str], reason: str, chunk: int = 500) -> list[str]:
        """Cancel tasks in order, pipelined; one reply per task, as :meth:`cancel`."""
        outcomes: list = []
        for start in range(0, len(task_ids), chunk):
            with self.connection.pipeline(transaction=False) as pipe:
                for task_id in task_ids[start:start + chunk]:
                    self.cancel(task_id, reason, client=pipe)
                outcomes += pipe.execute()
        return [as_text(o, "replace") for o in outcomes]

    # --- module_resume --------------------------------------------------------------
    def resume_module(self, name: str) -> int:
        """Put a paused module's held tasks back on their queues; how many."""
        return int(self.scripts.module_resume(
            keys=[self.keys.rq_queue(q) for q in self.keys.queue_names],
            args=[self.keys.prefix, name, *range(1, len(PRIORITY_LEVELS) + 1)]))
