"""TaskClient: submit, inspect, wait for and cancel tasks. No execution happens here.

The manager composes it; the CLI uses it directly. Every state change is one Lua
script (see piano_dist/lua/task_*.lua), so a refused submission stores nothing.
"""
from __future__ import annotations

import json
import os
import re
import threading
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

import redis

from ..config import Timing
from ..errors import (DependencyCycleError, QueueFullError, SecurityError, TaskFailedError,
                      TaskTimeoutError, UnknownTaskError)
from ..keys import PRIORITY_LEVELS, Keys
from ..replication import pipelined, replicas_to_wait
from ..retry_policy import is_transient
from ..scripts import ScriptSet
from ..security import SecurityValidator
from .events import EventBus
from .registry import ModuleRegistration, ModuleRegistry
from .runtime import FUNC_NAME
from .types import Priority, TaskStatus

_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_STATUS_FIELDS = ("piano_status", "piano_module", "piano_method", "piano_priority", "created_at",
                  "started_at", "ended_at", "worker_name", "piano_result", "piano_error",
                  "piano_attempts", "piano_wait_reason", "piano_timeout", "piano_agent",
                  "piano_cancel", "piano_last_loss", "piano_model_ms", "piano_model_calls", "origin")


@dataclass
class TaskSpec:
    """One task to submit (``submit_many`` takes these, or dicts with the same keys)."""

    module_name: str
    method_name: str = "run"
    args: tuple = ()
    kwargs: dict | None = None
    priority: Any = Priority.NORMAL
    dependencies: Iterable[str] | None = None
    callback: Callable | None = None
    timeout: float | None = None
    allow_failure: Iterable[str] | None = None
    retries: int = 0
    retry_delay: float = 0.0
    max_attempts: int | None = None
    agent_id: str | None = None
    task_id: str | None = None
    group: str | None = None
    keep_result: bool = True

    @classmethod
    def coerce(cls, spec: Any, position: int) -> "TaskSpec":
        if isinstance(spec, TaskSpec):
            return spec
        if isinstance(spec, dict):
            unknown = set(spec) - set(cls.__dataclass_fields__)
            if unknown:
                raise ValueError(f"task spec #{position} has unknown keys: {', '.join(sorted(unknown))}")
            if "module_name" not in spec:
                raise ValueError(f"task spec #{position} needs a module_name")
            return cls(**spec)
        raise TypeError(f"task spec #{position} must be a TaskSpec or dict, not {type(spec).__name__}")


@dataclass
class PreparedTask:
    """A validated task, in task_submit_many's terms (see its header): the hash fields it
    shares with tasks of the same module, method and options (``profile``), those it shares
    with tasks of the same arguments (``payload``), and its own (``record``)."""

    task_id: str
    queue_name: str
    profile: tuple  # origin, priority, module, then field, value, …
    payload: tuple  # piano_payload, RQ's data (JSON [func, None, args, kwargs], zlib-compressed if shorter)
    record: list  # id, created_at, then (by _submit_args) profile and payload numbers, parents, tolerated, fields
    parents: list = field(default_factory=list)
    tolerated: list = field(default_factory=list)
    callback: Callable | None = None


_TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
MAX_DEPENDENCIES = 10_000  # parents of one task (and tolerated failures among them)
_FUNC_JSON = json.dumps(FUNC_NAME)
_SUBMIT_CHUNK = 500  # tasks per task_submit_many call: Redis is busy a few ms per call
_EXISTS_CHUNK = 1000  # keys per EXISTS of submit_many's pre-check
_stamp_second: list = [None, ""]


def _utc_stamp() -> str:
    """Now in RQ's utcformat ("%Y-%m-%dT%H:%M:%S.%fZ"), as RQ 3's Job.create stamps created_at."""
    seconds, ns = divmod(time.time_ns(), 1_000_000_000)
    cached = _stamp_second
    if cached[0] != seconds:
        cached[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        cached[0] = seconds
    return f"{cached[1]}.{ns // 1000:06d}Z"


class _BatchCache:
    """What one submission call looks up or encodes once for all its tasks."""

    __slots__ = ("registrations", "methods", "priorities", "profiles", "payloads")

    def __init__(self) -> None:
        self.registrations: dict = {}
        self.methods: dict = {}
        self.priorities: dict = {}
        self.profiles: dict = {}
        self.payloads: dict = {}


def _iso_to_epoch(raw: bytes | None) -> float | None:
    if not raw:
        return None
    text = raw.decode()
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None


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
        self.task_timeout = task_timeout
        self.timing = timing or Timing()
        self.scripts = ScriptSet(connection)
        self.registry = ModuleRegistry(connection, self.keys)
        self.events = EventBus(connection, self.keys)
        self.events.task_callback_resolver = self._terminal_status
        self.queue_names = self.keys.queue_names

    # --- submission ---------------------------------------------------------------
    def _registration(self, name: Any, cache: _BatchCache):
        registration = cache.registrations.get(name) if isinstance(name, str) else None
        if registration is None:
            if self.require_registration:
                registration = self.registry.require(name)
            else:
                registration = ModuleRegistration(SecurityValidator.validate_module_name(name), "")
            cache.registrations[name] = registration
        return registration

    def _method(self, registration, method_name: Any, cache: _BatchCache) -> str:
        key = (registration.name, method_name) if isinstance(method_name, str) else None
        method = cache.methods.get(key) if key else None
        if method is None:
            if self.require_registration:
                method = self.registry.check_method(registration, method_name)
            else:
                method = SecurityValidator.validate_method_name(method_name)
            cache.methods[key] = method
        return method

    @staticmethod
    def _priority(value: Any, cache: _BatchCache) -> Priority:
        key = (type(value), value) if type(value) in (str, int, Priority) else None
        priority = cache.priorities.get(key) if key else None
        if priority is None:
            try:
                priority = Priority.parse(value)
            except ValueError as exc:
                raise SecurityError(str(exc)) from None
            if key:
                cache.priorities[key] = priority
        return priority

    def _prepare(self, spec: TaskSpec, cache: _BatchCache | None = None,
                 queue_group: str | None = None) -> PreparedTask:
        if cache is None:
            cache = _BatchCache()
        keys = self.keys if queue_group is None else self.keys.grouped(queue_group)
        registration = self._registration(spec.module_name, cache)
        method = self._method(registration, spec.method_name, cache)
        args, kwargs, args_json, kwargs_json = SecurityValidator.encode_execution_args(spec.args, spec.kwargs)
        priority = self._priority(spec.priority, cache)
        parents = self._check_ids(spec.dependencies, "dependencies")
        if spec.task_id is not None and spec.task_id in parents:
            raise DependencyCycleError(f"task {spec.task_id} depends on itself")
        tolerated = self._check_ids(spec.allow_failure, "allow_failure")
        if tolerated:
            stray = set(tolerated) - set(parents)
            if stray:
                raise SecurityError(f"allow_failure names tasks that are not dependencies: {', '.join(sorted(stray))}")
        timeout = spec.timeout if spec.timeout is not None else self.task_timeout
        if timeout is not None:
            SecurityValidator.validate_seconds(timeout, "timeout")
        for name in ("retries", "max_attempts"):
            value = getattr(spec, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0
                                      or (name == "max_attempts" and value < 1)):
                raise SecurityError(f"{name} must be a {'positive' if name == 'max_attempts' else 'non-negative'} "
                                    f"integer, not {value!r}")
        SecurityValidator.validate_seconds(spec.retry_delay, "retry_delay", allow_zero=True)
        if spec.callback is not None and not callable(spec.callback):
            raise SecurityError(f"callback must be callable, not {type(spec.callback).__name__}")
        if spec.group is not None and (not isinstance(spec.group, str) or not _TASK_ID.fullmatch(spec.group)):
            raise SecurityError(f"group {spec.group!r} is invalid: use 1-128 letters, digits, '_' or '-'")
        if not isinstance(spec.keep_result, bool):
            raise SecurityError(f"keep_result must be True or False, not {spec.keep_result!r}")
        task_id = (spec.task_id if spec.task_id is not None
                   else f"{_ID_UNSAFE.sub('_', spec.module_name)[:40]}_{method}_{os.urandom(8).hex()}")
        if not isinstance(task_id, str) or not _TASK_ID.fullmatch(task_id):
            raise SecurityError(f"task id {task_id!r} is invalid: use 1-128 letters, digits, '_' or '-'")
        module = spec.module_name
        if spec.agent_id is not None:
            SecurityValidator.validate_agent_id(spec.agent_id)
        agent = spec.agent_id or registration.agent_id
        # The hash is what RQ 3's Job.create(FUNC_NAME, args=[module, method, *args], kwargs=kwargs,
        # serializer=JSONSerializer, ...).to_dict() gives, plus piano's fields: the fields every
        # task has are _constant_fields, those of one module/method/options the profile.
        # Types too: 1 == 1.0 == True as keys, but they encode differently.
        options = (module, method, priority, agent, type(agent), timeout, type(timeout), spec.retries,
                   type(spec.retries), spec.retry_delay, type(spec.retry_delay), spec.max_attempts,
                   type(spec.max_attempts), spec.keep_result, queue_group)
        try:
            profile = cache.profiles.get(options)
        except TypeError:  # an unhashable agent id: its encoding below raises as before
            options, profile = None, None
        if profile is None:
            profile = [
                keys.queue_name(priority.level), str(int(priority)), module,
                "origin", keys.queue_name(priority.level),
                "description", f"{module}.{method}",
                "piano_module", module,
                "piano_method", method,
                "piano_priority", str(int(priority)),
                "piano_timeout", "" if timeout is None else repr(float(timeout)),
                "piano_agent", self._text(agent or ""),
                "piano_retries_left", self._text(spec.retries or 0),
                "piano_retry_delay", self._text(spec.retry_delay or 0),
                "piano_max_attempts", self._text(spec.max_attempts or self.timing.max_attempts),
            ]
            if timeout:
                profile += ("timeout", str(int(timeout) + 1))
            if not spec.keep_result:
                profile += ("piano_keep_result", "0")
            profile = tuple(profile)
            if options is not None:
                cache.profiles[options] = profile
        payload_key = (module, method, args_json, kwargs_json)
        payload = cache.payloads.get(payload_key)
        if payload is None:
            data = (f"[{_FUNC_JSON},null,[{json.dumps(module)},{json.dumps(method)}"
                    f"{',' + args_json[1:-1] if args else ''}],{kwargs_json}]").encode()
            # RQ reads data zlib-compressed or, failing that, as it is: small tasks' data is
            # shorter raw, and short values keep the record in Redis' compact encoding.
            packed = zlib.compress(data)
            payload = cache.payloads[payload_key] = (f"[{args_json},{kwargs_json}]",
                                                     packed if len(packed) < len(data) else data)
        record = [task_id, _utc_stamp()]
        if spec.group:
            record += ("group_id", spec.group)
        if tolerated:
            record += ("piano_allow_failure", json.dumps(tolerated))
        if parents:
            # A record for RQ tools (rq-dashboard's job page lists them), in RQ 3's own form.
            # Scheduling never reads it: the graph lives in the :pending/:children keys.
            record += ("dependency_ids", json.dumps(parents))
        return PreparedTask(task_id, profile[0], profile, payload, record, parents, tolerated, spec.callback)

    def _text(self, value: Any) -> str:
        """A hash value as Redis stores it (redis-py's encoding: str as is, int/float as text)."""
        if isinstance(value, str):
            return value
        if type(value) is int:
            return str(value)
        return self.connection.get_encoder().encode(value).decode("utf-8", "surrogateescape")

    def _constant_fields(self) -> list:
        """The hash fields every task starts with. RQ's to_dict also writes empty callback,
        time and worker fields; RQ reads a missing one as empty, so they are left out (a
        record of short values only stays in Redis' compact encoding)."""
        return ["result_ttl", str(self.timing.result_ttl), "piano_attempts", "0"]

    @staticmethod
    def _check_ids(ids: Any, what: str) -> list[str]:
        if ids is None:
            return []
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            raise SecurityError(f"{what} must be a set or list of task ids, not {type(ids).__name__}")
        out: dict[str, None] = {}
        for item in ids:
            if not isinstance(item, str) or not _TASK_ID.fullmatch(item):
                raise SecurityError(f"{what} contains an invalid task id {item!r}")
            out[item] = None
            if len(out) > MAX_DEPENDENCIES:
                raise SecurityError(f"{what} names more than {MAX_DEPENDENCIES} tasks; split the work "
                                    f"(for example through intermediate tasks that each depend on a part)")
        return list(out)

    def _submit_args(self, tasks: list[PreparedTask], limit: int, submission: str) -> list:
        """task_submit_many's ARGV for these tasks (see its header). ``submission`` marks
        every task of one submit call, so that a call repeated after its reply was lost
        (the retry policy re-sends it) recognises its own tasks: see _own_repeat."""
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
        common = self._constant_fields() + ["piano_submission", submission]
        args: list = [self.keys.prefix, limit, self.timing.result_ttl, json.dumps(common),
                      json.dumps(list(profiles), ensure_ascii=False), len(payloads)]
        for text, data in payloads:
            args += (text, data)
        args += records
        return args

    def _recount_backlog(self) -> int:
        """The backlog counted from the lists tasks wait on (also stored as the counter)."""
        return int(self.scripts.task_backlog(keys=self.keys.waiting_lists(), args=[self.keys.prefix]))

    def _raise_refusal(self, exc: redis.ResponseError, task_id: str) -> None:
        text = str(exc)
        if text.startswith("UNKNOWN_DEPENDENCY"):
            raise UnknownTaskError(f"dependency {text.split(' ', 1)[1]} is not a known task "
                                   f"(task {task_id} was not submitted)") from None
        if text.startswith("TASK_EXISTS"):
            raise SecurityError(f"task id {task_id} already exists") from None
        if text.startswith("QUEUE_FULL"):
            backlog = text.split(" ", 1)[1]
            self.events.publish_overload({"backlog": int(backlog), "limit": self.max_queue_size})
            raise QueueFullError(f"queue is full: {backlog} tasks waiting, max_queue_size is "
                                 f"{self.max_queue_size}; task not submitted") from None
        raise exc

    def _refusals(self, result: list, tasks: list[PreparedTask], submission: str) -> dict[int, redis.ResponseError]:
        """task_submit_many's refusals (task number → message), as the errors a script call
        raises, less the tasks this very submission stored (see _own_repeat)."""
        refusals = {int(result[i]): redis.ResponseError(result[i + 1].decode()) for i in range(0, len(result), 2)}
        for number, exc in list(refusals.items()):
            if str(exc).startswith("TASK_EXISTS") and self._own_repeat(tasks[number - 1].task_id, submission):
                del refusals[number]
        return refusals

    def _own_repeat(self, task_id: str, submission: str) -> bool:
        """Whether the task that exists under this id was stored by this submission: its
        first attempt ran and only the reply was lost, so the retry found it there."""
        stored = self.connection.hget(self.keys.rq_job(task_id), "piano_submission")
        return stored is not None and stored.decode(errors="replace") == submission

    def _submit_one(self, script, args: list, task: PreparedTask, submission: str) -> dict:
        if replicas_to_wait()[0]:  # WAIT must ride the write's connection: a pipeline
            [result] = pipelined(self.connection, lambda pipe: script(args=args, client=pipe), "submit")
            if isinstance(result, redis.ResponseError) and is_transient(result):
                result = script(args=args)  # not run (BUSY, OOM, …): again, under the retry policy
            if isinstance(result, Exception):
                raise result
        else:
            result = script(args=args)
        return self._refusals(result, [task], submission)

    def submit(self, spec: TaskSpec, queue_group: str | None = None) -> str:
        """``queue_group``: queue the task on that group's queues instead of the cluster's."""
        task = self._prepare(spec, queue_group=queue_group)
        if task.callback is not None:
            self.events.add_task_callback(task.task_id, task.callback)
        submission = os.urandom(4).hex()  # tells this call's tasks from another submitter's
        script, args = self.scripts.task_submit_many, self._submit_args([task], self.max_queue_size, submission)
        try:
            refusals = self._submit_one(script, args, task, submission)
            if refusals and str(refusals[1]).startswith("QUEUE_FULL") and self._recount_backlog() < self.max_queue_size:
                # The counter had drifted above the real backlog: try again with the true one.
                refusals = self._submit_one(script, args, task, submission)
            if refusals:
                raise refusals[1]
        except redis.ResponseError as exc:
            self.events._task_callbacks.pop(task.task_id, None)
            self._raise_refusal(exc, task.task_id)
        return task.task_id

    def submit_many(self, specs: Iterable[Any]) -> list[str]:
        """Validate every spec first, then submit them all in one pipelined round trip.

        A spec may depend on an earlier spec of the same batch by its id (give
        ``task_id``). If any spec is invalid, nothing is submitted.
        """
        cache = _BatchCache()
        prepared = [self._prepare(TaskSpec.coerce(s, i), cache) for i, s in enumerate(specs)]
        if not prepared:
            return []
        if self.max_queue_size:
            backlog = int(self.connection.hget(self.keys.stats, "backlog") or 0)
            if backlog + len(prepared) > self.max_queue_size:
                backlog = self._recount_backlog()  # the counter may have drifted above it
            if backlog + len(prepared) > self.max_queue_size:
                self.events.publish_overload({"backlog": backlog, "limit": self.max_queue_size})
                raise QueueFullError(
                    f"queue is full: {backlog} tasks waiting + {len(prepared)} submitted exceeds "
                    f"max_queue_size {self.max_queue_size}; nothing submitted")
        ids = [t.task_id for t in prepared]
        position: dict[str, int] = {}
        for i, tid in enumerate(ids):
            if tid in position:
                raise SecurityError(f"task id {tid} appears twice in the batch (specs #{position[tid]} "
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
                raise SecurityError(f"task id {clash[0]} already exists; nothing submitted")
            missing = [p for p in known if not owns(origins[p])]
            if missing:
                raise UnknownTaskError(f"dependency {missing[0]} is not a known task; nothing submitted")
        for t in prepared:
            if t.callback is not None:
                self.events.add_task_callback(t.task_id, t.callback)
        script = self.scripts.task_submit_many
        submission = os.urandom(4).hex()  # tells this call's tasks from another submitter's
        chunks = [prepared[start:start + _SUBMIT_CHUNK] for start in range(0, len(prepared), _SUBMIT_CHUNK)]
        def fill(pipe) -> None:
            for chunk in chunks:
                script(args=self._submit_args(chunk, 0, submission), client=pipe)

        results = pipelined(self.connection, fill, f"submit of {len(prepared)} task(s)")
        for start, chunk, result in zip(range(0, len(prepared), _SUBMIT_CHUNK), chunks, results):
            if isinstance(result, redis.ResponseError) and is_transient(result):
                # Redis did not run this chunk (BUSY, OOM, …): send it again on its own,
                # under the client's retry policy.
                result = script(args=self._submit_args(chunk, 0, submission))
            if isinstance(result, redis.ResponseError):
                raise result
            refusals = self._refusals(result, chunk, submission)
            if refusals:
                first = min(refusals)
                self._raise_refusal(refusals[first], prepared[start + first - 1].task_id)
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
            "created_at": _iso_to_epoch(values["created_at"]),
            "started_at": _iso_to_epoch(values["started_at"]),
            "ended_at": _iso_to_epoch(values["ended_at"]),
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
        """The status of a task whose record is already gone (result TTL 0), as far as its
        "finished" event told: no result, since none was kept."""
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
            raise UnknownTaskError(f"task {task_id} completed, but its result was not kept (result TTL 0)")
        return status.get("result")

    # --- control ------------------------------------------------------------------
    def cancel(self, task_id: str, reason: str = "cancelled by request") -> bool:
        if not isinstance(task_id, str) or not _TASK_ID.fullmatch(task_id):
            return False
        outcome = self.scripts.task_cancel(keys=[self.keys.rq_job(task_id)],
                                           args=[self.keys.prefix, task_id, self.timing.result_ttl, reason])
        return bool(outcome)

    def pause_module(self, name: str) -> None:
        self.registry.require(name)
        self.connection.sadd(self.keys.paused_modules, name)

    def resume_module(self, name: str) -> int:
        self.registry.require(name)
        return self.scripts.module_resume(
            keys=[self.keys.rq_queue(q) for q in self.queue_names],
            args=[self.keys.prefix, name, *range(1, len(PRIORITY_LEVELS) + 1)])

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
        outcomes: list = []
        for start in range(0, len(task_ids), 500):
            with self.connection.pipeline(transaction=False) as pipe:
                for tid in task_ids[start:start + 500]:
                    self.scripts.task_cancel(keys=[self.keys.rq_job(tid)],
                                             args=[self.keys.prefix, tid, self.timing.result_ttl, reason],
                                             client=pipe)
                outcomes += pipe.execute()
        return [o.decode() if isinstance(o, bytes) else o for o in outcomes]
