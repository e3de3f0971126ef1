"""Read-only views over many tasks: list them, a task's parents, the backlog of paused
modules. Used by the CLI (``piano-dist tasks``, ``status``, ``info``).

Tasks are found where the task scripts keep them — the priority queues, the held lists
of paused modules, the parked lists (tasks no worker that looked could start), the
retry-delay set, the running set and RQ's deferred, finished,
failed and canceled registries of the prefix's queues — so a listing costs one read per
task Redis still keeps (finished ones for the result TTL), never a scan of the keyspace.
Registry entries can outlive their task's hash; each task's own hash is the truth.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

import redis

from ..keys import PRIORITY_LEVELS, Keys
from ..replies import as_text
from .types import Priority, TaskStatus

_FIELDS = ("piano_status", "piano_module", "piano_method", "piano_priority", "created_at", "started_at",
           "ended_at", "piano_agent", "worker_name")
_CHUNK = 1000

# Where each status lives (RQ registry kinds per queue, and piano's own structures).
_REGISTRIES = {
    "deferred": ("deferred",),
    "completed": ("finished",),
    "failed": ("failed",),
    "timed_out": ("failed",),
    "dependency_failed": ("failed",),
    "cancelled": ("canceled",),
}


def epoch_of(raw: bytes | None) -> float | None:
    """Epoch seconds of a time RQ wrote (its utcformat), or None when missing or unreadable."""
    if not raw:
        return None
    try:
        # fromisoformat reads RQ's "%Y-%m-%dT%H:%M:%S.%fZ" (minus its Z) at a fifth of
        # strptime's cost: a refresh of 10,000 statuses parses 30,000 of these.
        text = raw.decode()
        moment = datetime.fromisoformat(text[:-1] if text.endswith("Z") else text)
        if moment.tzinfo is not None:  # RQ writes UTC without an offset; anything else is not its
            return None
        return moment.replace(tzinfo=timezone.utc).timestamp()
    except (ValueError, UnicodeDecodeError):
        return None


def _text(raw: bytes | None) -> str | None:
    """A field's text, or None for a missing or empty one."""
    return as_text(raw, "replace") or None


def _priority_name(raw: bytes | None) -> str | None:
    try:
        return Priority(int(raw)).name.lower() if raw else None
    except ValueError:
        return None


def candidate_ids(connection: redis.Redis, keys: Keys, statuses: Iterable[str] | None = None) -> list[str]:
    """Ids of the prefix's tasks in the structures that hold ``statuses`` (default all)."""
    wanted = set(statuses) if statuses else {s.value for s in TaskStatus}
    kinds = sorted({kind for s in wanted for kind in _REGISTRIES.get(s, ())})
    paused = [m.decode() for m in connection.smembers(keys.paused_modules)] if "queued" in wanted else []
    parked = parked_lists(connection, keys) if "queued" in wanted else {}
    with connection.pipeline(transaction=False) as pipe:
        for q in keys.queue_names:
            if "queued" in wanted:
                pipe.lrange(keys.rq_queue(q), 0, -1)
            for kind in kinds:
                pipe.zrange(keys.rq_registry(kind, q), 0, -1)
        if "queued" in wanted:
            pipe.zrange(keys.delayed, 0, -1)
            for module in paused:
                for level in range(1, len(PRIORITY_LEVELS) + 1):
                    pipe.lrange(keys.held(module, level), 0, -1)
            for key in parked.values():
                pipe.lrange(key, 0, -1)
        if "running" in wanted:
            pipe.zrange(keys.running, 0, -1)
        rows = pipe.execute()
    return list(dict.fromkeys(i.decode() for row in rows for i in row))


@dataclass
class QueueCounts:
    """Tasks per queue (in level order) on the queue lists and in RQ's deferred
    registries, tasks running, and the replies of the caller's extra commands."""

    queued: list[int]
    deferred: list[int]
    running: int
    extra: list


def queue_counts(connection: redis.Redis, keys: Keys, *extra: Callable[[Any], Any]) -> QueueCounts:
    """Count the queues in one round trip; each of ``extra`` adds a command of the
    caller's to the same pipeline (``lambda pipe: pipe.hgetall(keys.stats)``)."""
    names = keys.queue_names
    with connection.pipeline(transaction=False) as pipe:
        for q in names:
            pipe.llen(keys.rq_queue(q))
        for q in names:
            pipe.zcard(keys.rq_registry("deferred", q))
        pipe.zcard(keys.running)
        for add in extra:
            add(pipe)
        rows = pipe.execute()
    n = len(names)
    return QueueCounts(rows[:n], rows[n:2 * n], rows[2 * n], rows[2 * n + 1:])


def held_counts(connection: redis.Redis, keys: Keys, modules: Iterable[str]) -> list[int]:
    """Tasks of these (paused) modules set aside on their held lists, per level: they
    still wait at their priority."""
    levels = len(PRIORITY_LEVELS)
    totals = [0] * levels
    modules = list(modules)
    if not modules:
        return totals
    with connection.pipeline(transaction=False) as pipe:
        for module in modules:
            for level in range(1, levels + 1):
                pipe.llen(keys.held(module, level))
        held = pipe.execute()
    for j, count in enumerate(held):
        totals[j % levels] += count
    return totals


def parked_lists(connection: redis.Redis, keys: Keys) -> dict[tuple[str, str], str]:
    """(queue name, module) → the list of that module's tasks parked off that queue
    (no worker that looked could start them)."""
    out = {}
    for raw in connection.smembers(keys.parked_index):
        queue, sep, module = raw.decode(errors="replace").partition(":")
        if sep and queue in keys.queue_names:
            out[(queue, module)] = keys.parked(queue, module)
    return out


def parked_backlog(connection: redis.Redis, keys: Keys) -> tuple[dict[str, int], dict[str, int]]:
    """Parked tasks counted per module and per queue."""
    lists = parked_lists(connection, keys)
    with connection.pipeline(transaction=False) as pipe:
        for key in lists.values():
            pipe.llen(key)
        counts = pipe.execute()
    by_module: dict[str, int] = {}
    by_queue: dict[str, int] = {}
    for (queue, module), n in zip(lists, counts):
        if n:
            by_module[module] = by_module.get(module, 0) + n
            by_queue[queue] = by_queue.get(queue, 0) + n
    return dict(sorted(by_module.items())), by_queue


def task_rows(connection: redis.Redis, task_ids: list[str]) -> list[dict]:
    """Each still-existing task's summary: id, status, module, method, priority, agent,
    worker and its created/started/ended times (epoch seconds)."""
    out = []
    for start in range(0, len(task_ids), _CHUNK):
        chunk = task_ids[start:start + _CHUNK]
        with connection.pipeline(transaction=False) as pipe:
            for tid in chunk:
                pipe.hmget(Keys.rq_job(tid), _FIELDS)
            rows = pipe.execute()
        for tid, row in zip(chunk, rows):
            values = dict(zip(_FIELDS, row))
            if not values["piano_status"]:
                continue
            out.append({
                "task_id": tid,
                "status": _text(values["piano_status"]),
                "module": _text(values["piano_module"]),
                "method": _text(values["piano_method"]),
                "priority": _priority_name(values["piano_priority"]),
                "agent": _text(values["piano_agent"]),
                "worker": _text(values["worker_name"]),
                "created_at": epoch_of(values["created_at"]),
                "started_at": epoch_of(values["started_at"]),
                "ended_at": epoch_of(values["ended_at"]),
            })
    return out


def list_tasks(connection: redis.Redis, keys: Keys, status: str | None = None, module: str | None = None,
               agent: str | None = None, limit: int | None = None) -> list[dict]:
    """The prefix's tasks, newest created first, filtered; ``limit`` keeps the newest N.
    Tasks held for a paused module are ``queued``, as their own status says."""
    rows = task_rows(connection, candidate_ids(connection, keys, [status] if status else None))
    rows = [r for r in rows
            if (status is None or r["status"] == status) and (module is None or r["module"] == module)
            and (agent is None or r["agent"] == agent)]
    rows.sort(key=lambda r: (r["created_at"] or 0.0, r["task_id"]), reverse=True)
    return rows if limit is None else rows[:limit]


def dependencies(connection: redis.Redis, keys: Keys, task_id: str) -> tuple[list[str], list[str]]:
    """A task's parents (as submitted) and those it still waits for."""
    with connection.pipeline(transaction=False) as pipe:
        pipe.hget(Keys.rq_job(task_id), "dependency_ids")
        pipe.smembers(keys.task_pending_parents(task_id))
        raw, pending = pipe.execute()
    try:
        parents = json.loads(raw) if raw else []
    except ValueError:
        parents = []
    if not isinstance(parents, list):
        parents = []
    parents = [p for p in parents if isinstance(p, str)]
    waiting = sorted(p.decode() for p in pending)
    return parents, [p for p in parents if p in waiting] + [p for p in waiting if p not in parents]


def paused_backlog(connection: redis.Redis, keys: Keys) -> dict[str, int]:
    """Each paused module with the number of its tasks waiting: those set aside on its
    held lists, plus those still on a queue (set aside when a worker next claims)."""
    paused = sorted(m.decode() for m in connection.smembers(keys.paused_modules))
    if not paused:
        return {}
    counts = dict.fromkeys(paused, 0)
    with connection.pipeline(transaction=False) as pipe:
        for module in paused:
            for level in range(1, len(PRIORITY_LEVELS) + 1):
                pipe.llen(keys.held(module, level))
        held = pipe.execute()
    for i, module in enumerate(paused):
        counts[module] = sum(held[i * len(PRIORITY_LEVELS):(i + 1) * len(PRIORITY_LEVELS)])
    queued: list[str] = []
    with connection.pipeline(transaction=False) as pipe:
        for q in keys.queue_names:
            pipe.lrange(keys.rq_queue(q), 0, -1)
        for row in pipe.execute():
            queued += [i.decode() for i in row]
    for start in range(0, len(queued), _CHUNK):
        with connection.pipeline(transaction=False) as pipe:
            for tid in queued[start:start + _CHUNK]:
                pipe.hmget(Keys.rq_job(tid), "piano_status", "piano_module")
            for status, module in pipe.execute():
                name = _text(module)
                if status == b"queued" and name in counts:
                    counts[name] += 1
    return counts
