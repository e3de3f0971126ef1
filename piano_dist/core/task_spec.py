"""Task specs: what a submitter asks for, validated and encoded as a task's record.

:class:`TaskEncoder` checks a :class:`TaskSpec` (every argument error raises
InvalidArgument naming what was wrong, before anything is stored) and encodes it as the
hash RQ 3's ``Job.create(...).to_dict()`` would write plus piano's own fields, split the
way task_submit_many takes it (see its header): fields shared by tasks of one module,
method and options (the profile), by tasks of the same arguments (the payload), and the
task's own. ``core/task_scripts.py`` turns prepared tasks into the script's ARGV.
"""
from __future__ import annotations

import json
import os
import re
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ..arguments import MAX_TTL, is_whole
from ..config import Timing
from ..errors import DependencyCycleError, InvalidArgument
from ..keys import Keys
from ..security import SecurityValidator
from .registry import ModuleRegistration, ModuleRegistry
from .runtime import FUNC_NAME
from .types import Priority

_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


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
    result_ttl: int | None = None  # seconds its record is kept once it ends (None: PIANO_RESULT_TTL)

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


TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
MAX_DEPENDENCIES = 10_000  # parents of one task (and tolerated failures among them)
_FUNC_JSON = json.dumps(FUNC_NAME)
_stamp_second: list = [None, ""]


def _utc_stamp() -> str:
    """Now in RQ's utcformat ("%Y-%m-%dT%H:%M:%S.%fZ"), as RQ 3's Job.create stamps created_at."""
    seconds, ns = divmod(time.time_ns(), 1_000_000_000)
    cached = _stamp_second
    if cached[0] != seconds:
        cached[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        cached[0] = seconds
    return f"{cached[1]}.{ns // 1000:06d}Z"


class BatchCache:
    """What one submission call looks up or encodes once for all its tasks."""

    __slots__ = ("registrations", "methods", "priorities", "profiles", "payloads")

    def __init__(self) -> None:
        self.registrations: dict = {}
        self.methods: dict = {}
        self.priorities: dict = {}
        self.profiles: dict = {}
        self.payloads: dict = {}


def constant_fields(timing: Timing) -> list:
    """The hash fields every task starts with. RQ's to_dict also writes empty callback,
    time and worker fields; RQ reads a missing one as empty, so they are left out (a
    record of short values only stays in Redis' compact encoding)."""
    return ["result_ttl", str(timing.result_ttl), "piano_attempts", "0"]


class TaskEncoder:
    """Validates TaskSpecs and encodes them for one deployment (``keys``)."""

    def __init__(self, registry: ModuleRegistry, keys: Keys, timing: Timing, encoder: Any,
                 task_timeout: float | None = None, require_registration: bool = True):
        """``encoder``: the connection's (``get_encoder()``), so that values are stored as
        redis-py would write them. ``require_registration=False``: tasks may name any
        (valid) module and method (a standalone TaskScheduler's, which no worker runs)."""
        self.registry = registry
        self.keys = keys
        self.timing = timing
        self.encoder = encoder
        self.task_timeout = task_timeout
        self.require_registration = require_registration

    def _registration(self, name: Any, cache: BatchCache):
        registration = cache.registrations.get(name) if isinstance(name, str) else None
        if registration is None:
            if self.require_registration:
                registration = self.registry.require(name)
            else:
                registration = ModuleRegistration(SecurityValidator.validate_module_name(name), "")
            cache.registrations[name] = registration
        return registration

    def _method(self, registration, method_name: Any, cache: BatchCache) -> str:
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
    def _priority(value: Any, cache: BatchCache) -> Priority:
        key = (type(value), value) if type(value) in (str, int, Priority) else None
        priority = cache.priorities.get(key) if key else None
        if priority is None:
            try:
                priority = Priority.parse(value)
            except ValueError as exc:
                raise InvalidArgument(str(exc)) from None
            if key:
                cache.priorities[key] = priority
        return priority

    def prepare(self, spec: TaskSpec, cache: BatchCache | None = None,
                 queue_group: str | None = None) -> PreparedTask:
        if cache is None:
            cache = BatchCache()
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
                raise InvalidArgument(f"allow_failure names tasks that are not dependencies: {', '.join(sorted(stray))}")
        timeout = spec.timeout if spec.timeout is not None else self.task_timeout
        if timeout is not None:
            SecurityValidator.validate_seconds(timeout, "timeout")
        for name in ("retries", "max_attempts"):
            value = getattr(spec, name)
            if value is not None and (not is_whole(value) or value < 0
                                      or (name == "max_attempts" and value < 1)):
                raise InvalidArgument(f"{name} must be a {'positive' if name == 'max_attempts' else 'non-negative'} "
                                    f"integer, not {value!r}")
        SecurityValidator.validate_seconds(spec.retry_delay, "retry_delay", allow_zero=True)
        if spec.callback is not None and not callable(spec.callback):
            raise InvalidArgument(f"callback must be callable, not {type(spec.callback).__name__}")
        if spec.group is not None and (not isinstance(spec.group, str) or not TASK_ID.fullmatch(spec.group)):
            raise InvalidArgument(f"group {spec.group!r} is invalid: use 1-128 letters, digits, '_' or '-'")
        if not isinstance(spec.keep_result, bool):
            raise InvalidArgument(f"keep_result must be True or False, not {spec.keep_result!r}")
        if spec.result_ttl is not None and (not is_whole(spec.result_ttl) or not 0 <= spec.result_ttl <= MAX_TTL):
            raise InvalidArgument(f"result_ttl must be whole seconds from 0 to {MAX_TTL} (0: nothing is kept once "
                                  f"the task ends), or None for PIANO_RESULT_TTL, not {spec.result_ttl!r}")
        task_id = (spec.task_id if spec.task_id is not None
                   else f"{_ID_UNSAFE.sub('_', spec.module_name)[:40]}_{method}_{os.urandom(8).hex()}")
        if not isinstance(task_id, str) or not TASK_ID.fullmatch(task_id):
            raise InvalidArgument(f"task id {task_id!r} is invalid: use 1-128 letters, digits, '_' or '-'")
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
                   type(spec.max_attempts), spec.keep_result, spec.result_ttl, queue_group)
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
                "piano_agent", self._stored(agent or ""),
                "piano_retries_left", self._stored(spec.retries or 0),
                "piano_retry_delay", self._stored(spec.retry_delay or 0),
                "piano_max_attempts", self._stored(spec.max_attempts or self.timing.max_attempts),
            ]
            if timeout:
                profile += ("timeout", str(int(timeout) + 1))
            if not spec.keep_result:
                profile += ("piano_keep_result", "0")
            if spec.result_ttl is not None:
                # The task's own TTL outranks the ending process's PIANO_RESULT_TTL; RQ's
                # field (written earlier in the same HSET) is overridden to say so too.
                profile += ("result_ttl", str(int(spec.result_ttl)), "piano_result_ttl", str(int(spec.result_ttl)))
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

    def _stored(self, value: Any) -> str:
        """A hash value as Redis stores it (redis-py's encoding: str as is, int/float as text)."""
        if isinstance(value, str):
            return value
        if type(value) is int:
            return str(value)
        return self.encoder.encode(value).decode("utf-8", "surrogateescape")

    @staticmethod
    def _check_ids(ids: Any, what: str) -> list[str]:
        if ids is None:
            return []
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            raise InvalidArgument(f"{what} must be a set or list of task ids, not {type(ids).__name__}")
        out: dict[str, None] = {}
        for item in ids:
            if not isinstance(item, str) or not TASK_ID.fullmatch(item):
                raise InvalidArgument(f"{what} contains an invalid task id {item!r}")
            out[item] = None
            if len(out) > MAX_DEPENDENCIES:
                raise InvalidArgument(f"{what} names more than {MAX_DEPENDENCIES} tasks; split the work "
                                    f"(for example through intermediate tasks that each depend on a part)")
        return list(out)
