"""StateStore: one agent's state in Redis, and the scripts that change it.

Everything here is process-independent: any number of processes may hold a StateStore
for the same agent. Reads that need several commands run in MULTI/EXEC, and every
write is one Lua script, so no reader ever sees a half-applied batch or transaction.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional

import redis

from ..arguments import MAX_TTL, is_number, is_whole
from ..connection import get_connection
from ..errors import StateConflictError, StateWriteError, UnknownSnapshotError
from ..keys import Keys
from ..replies import as_text
from ..retry_policy import repeat_window
from ..resources.fencing import raise_if_fenced
from ..scripts import ScriptSet
from .fence import AGENT_STATE_RESOURCE
from .paths import validate_agent_id
from .tree import MISSING, ancestors, from_leaves, leaves_under, state_from_fields
from .types import ChangeOutcome, ChangeStatus, StateChange, StateChangeType, StateSnapshot

DEFAULT_OUTCOME_TTL = 24 * 3600
# Changes kept per agent for subscribers catching up (about 1 KB each with their old and
# new values): 100,000 let a thousand-agent simulation hold gigabytes of history.
DEFAULT_LOG_MAXLEN = 1_000
BATCH_LIMIT = 1000


def outcome_ttl_of(value: Optional[int]) -> int:
    """Seconds a change's outcome stays readable (``get_change_status``; a write repeated
    after a lost reply finds it and is not applied twice): ``value``, else
    ``PIANO_STATE_OUTCOME_TTL``, else a day. Never shorter than a write may be repeated
    (a reply is given up after the socket timeout, then retried for
    ``PIANO_REDIS_RETRY_SECONDS``): an outcome gone sooner would let it apply twice."""
    source = "outcome_ttl"
    if value is None:
        raw = os.environ.get("PIANO_STATE_OUTCOME_TTL", "")
        if raw == "":
            return DEFAULT_OUTCOME_TTL
        source, value = "PIANO_STATE_OUTCOME_TTL", int(raw) if raw.isdecimal() and raw.isascii() else raw
    shortest = repeat_window()
    whole = is_number(value) and math.isfinite(value) and float(value).is_integer()
    if not whole or not shortest <= value <= MAX_TTL:
        raise ValueError(f"{source} must be whole seconds from {shortest} (how long a write may be repeated: the "
                         f"socket timeout and PIANO_REDIS_RETRY_SECONDS) to {MAX_TTL}, not {value!r}")
    return int(value)


@dataclass
class LogEntry:
    """One applied change as read from the change log."""
    log_id: str
    change: StateChange
    new: Any  # the value now at change.path, MISSING if the path no longer exists

    @property
    def order(self) -> tuple[int, int]:
        return stream_order(self.log_id)


def stream_order(log_id: str) -> tuple[int, int]:
    ms, _, seq = log_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass
class BatchResult:
    applied: int = 0
    conflicts: int = 0
    remaining: int = 0
    outcomes: list[ChangeOutcome] = field(default_factory=list)


class StateStore:
    def __init__(self, agent_id: str, connection: Optional[redis.Redis] = None, prefix: Optional[str] = None,
                 *, redis_url: Optional[str] = None, outcome_ttl: Optional[int] = None,
                 log_maxlen: int = DEFAULT_LOG_MAXLEN):
        self.agent_id = validate_agent_id(agent_id)
        self.conn = get_connection(redis_url, connection)
        self.keys = Keys(prefix)
        self.scripts = ScriptSet(self.conn)
        self.outcome_ttl = outcome_ttl_of(outcome_ttl)
        self.log_maxlen = int(log_maxlen)
        k = lambda part: self.keys.state_key(agent_id, part)  # noqa: E731
        self.data, self.versions, self.meta, self.pending = k("data"), k("versions"), k("meta"), k("pending")
        self.log, self.resolvers, self.modvers, self.stats_key = k("log"), k("resolvers"), k("modvers"), k("stats")
        self.baseline, self.scratch, self.cursors = k("baseline"), k("scratch"), k("cursors")
        self.snapinfo, self.snapidx = k("snapinfo"), k("snapidx")
        self.subscribers = k("subscribers")
        self.change_prefix = self.keys.state_change_prefix(agent_id)
        self.snapshot_prefix = self.keys.state_snapshot_prefix(agent_id)
        self.channel = self.keys.state_channel(agent_id)

    # --- reads ---------------------------------------------------------------------
    def read_all(self) -> dict[str, Any]:
        return state_from_fields(self.conn.hgetall(self.data))

    def read(self, path: str) -> Any:
        """The value at ``path``, or MISSING."""
        raw = self.conn.hget(self.data, path)
        if raw is not None:
            return json.loads(raw)
        return from_leaves(leaves_under(self.conn.hgetall(self.data), path))

    def read_with_version(self, path: str) -> tuple[Any, int]:
        chain = list(ancestors(path)) + [path]
        with self.conn.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.data)
            pipe.hmget(self.versions, chain)
            fields, versions = pipe.execute()
        return from_leaves(leaves_under(fields, path)), max(int(v or 0) for v in versions)

    def read_all_with_cursor(self) -> tuple[dict[str, Any], str]:
        """The whole state and the id of the last log entry it includes, consistently."""
        with self.conn.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.data)
            pipe.xrevrange(self.log, "+", "-", count=1)
            fields, last = pipe.execute()
        return state_from_fields(fields), (as_text(last[0][0]) if last else "0-0")

    def version(self) -> int:
        return int(self.conn.hget(self.meta, "version") or 0)

    def path_version(self, path: str) -> int:
        versions = self.conn.hmget(self.versions, list(ancestors(path)) + [path])
        return max(int(v or 0) for v in versions)

    def module_versions(self) -> dict[str, int]:
        return {as_text(k): int(v) for k, v in self.conn.hgetall(self.modvers).items()}

    def pending_count(self) -> int:
        return int(self.conn.zcard(self.pending))

    def state_size_bytes(self) -> int:
        fields = self.conn.hgetall(self.data)
        return sum(len(k) + len(v) for k, v in fields.items())

    def stats(self) -> dict[str, int]:
        return {as_text(k): int(v) for k, v in self.conn.hgetall(self.stats_key).items()}

    def count_rollback(self) -> None:
        self.conn.hincrby(self.stats_key, "rollbacks_performed", 1)

    # --- proposals and outcomes ----------------------------------------------------
    def propose(self, change_id: str, record: Mapping[str, str]) -> tuple[int, int]:
        args: list[str] = [change_id]
        for name, value in record.items():
            args += [name, value]
        seq, pending = self.scripts.state_propose(
            keys=[self.pending, self.meta, self.change_prefix + change_id], args=args)
        return int(seq), int(pending)

    def pending_changes(self, limit: int = BATCH_LIMIT) -> list[StateChange]:
        ids = [as_text(i) for i in self.conn.zrange(self.pending, 0, limit - 1)]
        with self.conn.pipeline(transaction=False) as pipe:
            for change_id in ids:
                pipe.hgetall(self.change_prefix + change_id)
            # A change decided since the ZRANGE holds its outcome, a string: WRONGTYPE here.
            records = pipe.execute(raise_on_error=False)
        changes = []
        for change_id, raw in zip(ids, records):
            _raise_unless_wrong_type(raw)
            if raw and isinstance(raw, dict):
                changes.append(self._change_from_record(change_id, {as_text(k): as_text(v) for k, v in raw.items()}))
        return changes

    @staticmethod
    def _change_from_record(change_id: str, r: Mapping[str, str]) -> StateChange:
        new = from_leaves(json.loads(r.get("leaves", "{}")))
        expected = r.get("expected")
        return StateChange(
            change_id=change_id, module_id=r.get("module", ""), change_type=StateChangeType(r.get("type", "update")),
            path=r.get("path", ""), new_value=None if new is MISSING else new,
            timestamp=float(r.get("ts") or 0), priority=_num(r.get("priority", "0")),
            metadata=json.loads(r.get("meta") or "{}"),
            expected_version=int(expected) if expected else None,
        )

    def outcome(self, change_id: str) -> Optional[ChangeOutcome]:
        """The change's outcome, PENDING while it waits, or None for an unknown id. One
        round trip whichever form the record has: an outcome (a string, state_apply.lua)
        or a hash (pending, or an outcome an earlier version wrote)."""
        key = self.change_prefix + change_id
        # MULTI/EXEC: both read the same record, though it may turn from a pending hash
        # into an outcome string at any moment.
        with self.conn.pipeline(transaction=True) as pipe:
            pipe.get(key)
            pipe.hgetall(key)
            text, fields = pipe.execute(raise_on_error=False)  # one of the two is WRONGTYPE
        if isinstance(text, bytes):
            return outcome_from_text(change_id, text)
        if isinstance(fields, dict) and fields:
            r = {as_text(k): as_text(v) for k, v in fields.items()}
            return ChangeOutcome(
                change_id=change_id, status=ChangeStatus(r.get("status", "pending")), reason=r.get("reason", ""),
                version=int(r["version"]) if r.get("version") else None, path=r.get("path"),
                module_id=r.get("module"))
        _raise_unless_wrong_type(text)
        _raise_unless_wrong_type(fields)
        return None

    # --- transitions ---------------------------------------------------------------
    def _apply_keys(self, snapshot_id: str = "") -> list[str]:
        snapdata = self.snapshot_prefix + snapshot_id if snapshot_id else self.scratch
        return [self.data, self.versions, self.meta, self.pending, self.log, self.resolvers, self.modvers,
                self.stats_key, self.baseline, self.scratch, snapdata, self.snapinfo]

    def _apply(self, mode: str, payload: Any, fence: Optional[tuple[str, int]] = None, snapshot_id: str = ""):
        fence_key, token = fence or ("", 0)
        args = [mode, self.change_prefix, self.channel, fence_key, str(int(token)), str(self.outcome_ttl),
                str(self.log_maxlen), json.dumps(payload, separators=(",", ":"))]
        if snapshot_id:
            args.append(snapshot_id)
        try:
            return self.scripts.state_apply(keys=self._apply_keys(snapshot_id), args=args)
        except redis.ResponseError as exc:
            raise_if_fenced(exc, f"state write for agent {self.agent_id!r}", AGENT_STATE_RESOURCE)
            message = str(exc)
            if message.startswith("NOSNAPSHOT"):
                raise UnknownSnapshotError(f"agent {self.agent_id!r} has no snapshot {snapshot_id!r}") from exc
            raise

    def apply_batch(self, limit: int = BATCH_LIMIT, only: Optional[Iterable[str]] = None,
                    decisions: Optional[dict[str, Any]] = None) -> BatchResult:
        payload = {"limit": int(limit), "only": list(only) if only is not None else None,
                   "decisions": decisions or {}}
        reply = self._apply("batch", payload)
        result = BatchResult(applied=int(reply[0]), conflicts=int(reply[1]), remaining=int(reply[2]))
        rest = reply[3:]
        for i in range(0, len(rest), 4):
            change_id, status, reason, version = (as_text(x) for x in rest[i:i + 4])
            result.outcomes.append(ChangeOutcome(change_id, ChangeStatus(status), reason,
                                                 int(version) if version else None))
        return result

    def apply_atomic(self, changes: list[dict[str, Any]], fence: Optional[tuple[str, int]] = None,
                     transaction_id: Optional[str] = None) -> list[tuple[str, Optional[int]]]:
        """Apply all ``changes`` in order, or none; returns (change id, version) pairs."""
        reply = self._apply("atomic", changes, fence)
        status = as_text(reply[0])
        what = f"transaction {transaction_id!r}" if transaction_id else "state write"
        if status == "conflict":
            details = [as_text(x) for x in reply[1:]]
            paths = [d.split(" (", 1)[0] for d in details]
            raise StateConflictError(
                f"{what} for agent {self.agent_id!r} aborted, nothing applied: compare-and-set failed on "
                + ", ".join(details), paths=paths, transaction_id=transaction_id)
        if status == "rejected":
            raise StateWriteError(
                f"{what} for agent {self.agent_id!r} aborted, nothing applied: {as_text(reply[1])}")
        rest = reply[1:]
        # A repeat of an applied call reads the versions back from the outcomes: one
        # lost meanwhile (expired, or changed by hand) has none.
        return [(as_text(rest[i]), int(rest[i + 1]) if rest[i + 1] is not None else None)
                for i in range(0, len(rest), 2)]

    def init(self, items: list[dict[str, Any]]) -> int:
        return int(self._apply("init", items))

    def restore(self, snapshot_id: str, base_id: str, fence: Optional[tuple[str, int]] = None) -> int:
        return int(self._apply("restore", {"id": base_id}, fence, snapshot_id=snapshot_id))

    # --- conflict resolvers ------------------------------------------------------------
    def set_resolver(self, path: str, strategy: str, priority_order: list[str]) -> None:
        self.conn.hset(self.resolvers, path, json.dumps({"strategy": strategy, "priority_order": priority_order}))

    def resolvers_map(self) -> dict[str, dict[str, Any]]:
        return {as_text(k): json.loads(v) for k, v in self.conn.hgetall(self.resolvers).items()}

    # --- snapshots -------------------------------------------------------------------
    def _snapshot_keys(self, snapshot_id: str) -> list[str]:
        return [self.data, self.meta, self.modvers, self.snapinfo, self.snapidx, self.snapshot_prefix + snapshot_id]

    def create_snapshot(self, snapshot_id: str, max_snapshots: int, only_if_absent: bool = False) -> bool:
        return bool(self.scripts.state_snapshot(
            keys=self._snapshot_keys(snapshot_id),
            args=["create", snapshot_id, self.snapshot_prefix, str(int(max_snapshots)),
                  "1" if only_if_absent else "0"]))

    def delete_snapshot(self, snapshot_id: str) -> bool:
        return bool(self.scripts.state_snapshot(
            keys=self._snapshot_keys(snapshot_id), args=["delete", snapshot_id, self.snapshot_prefix, "0", "0"]))

    def snapshot_ids(self) -> list[str]:
        return [as_text(i) for i in self.conn.zrange(self.snapidx, 0, -1)]

    def snapshot_count(self) -> int:
        return int(self.conn.zcard(self.snapidx))

    def get_snapshot(self, snapshot_id: str) -> StateSnapshot:
        with self.conn.pipeline(transaction=True) as pipe:
            pipe.hget(self.snapinfo, snapshot_id)
            pipe.hgetall(self.snapshot_prefix + snapshot_id)
            info, fields = pipe.execute()
        if info is None:
            raise UnknownSnapshotError(f"agent {self.agent_id!r} has no snapshot {snapshot_id!r}")
        meta = json.loads(info)
        modules = meta.get("modules") or {}
        return StateSnapshot(
            snapshot_id=snapshot_id, timestamp=meta.get("ts", 0) / 1000.0, state_data=state_from_fields(fields),
            module_versions={k: int(v) for k, v in modules.items()}, change_sequence=int(meta.get("version", 0)),
        )

    # --- change log ------------------------------------------------------------------
    def last_log_id(self) -> str:
        last = self.conn.xrevrange(self.log, "+", "-", count=1)
        return as_text(last[0][0]) if last else "0-0"

    def read_log(self, after: str = "0-0", count: int = 500) -> list[LogEntry]:
        raw = self.conn.xrange(self.log, min=f"({after}" if after != "0-0" else "-", max="+", count=count)
        return [parse_log_entry(as_text(entry_id), fields) for entry_id, fields in raw]

    def log_length(self) -> int:
        return int(self.conn.xlen(self.log))

    def wait_for_log(self, after: str, timeout_ms: int) -> bool:
        """Block until the log has an entry after ``after`` (or the timeout passes)."""
        return bool(self.conn.xread({self.log: after}, count=1, block=max(1, int(timeout_ms))))

    def cursor(self, subscriber: str) -> Optional[str]:
        raw = self.conn.hget(self.cursors, subscriber)
        return as_text(raw) if raw is not None else None

    def set_cursors(self, cursors: Mapping[str, str]) -> None:
        if cursors:
            self.conn.hset(self.cursors, mapping=dict(cursors))

    # --- subscriptions (the agent-wide record; delivery is per process) ---------------
    def add_subscription(self, module_id: str, path: str) -> None:
        self.conn.hset(self.subscribers, json.dumps([module_id, path]), "1")

    def remove_subscriptions(self, module_id: str, paths: Iterable[str]) -> None:
        fields = [json.dumps([module_id, p]) for p in paths]
        if fields:
            self.conn.hdel(self.subscribers, *fields)

    def subscriptions_by_path(self) -> dict[str, set[str]]:
        """path -> module ids subscribed to it, in any process."""
        by_path: dict[str, set[str]] = {}
        for raw in self.conn.hkeys(self.subscribers):
            try:
                module_id, path = json.loads(raw)
            except (ValueError, TypeError):
                continue  # not ours: ignore rather than fail a read
            if isinstance(module_id, str) and isinstance(path, str):
                by_path.setdefault(path, set()).add(module_id)
        return by_path

    def init_cursor(self, subscriber: str, log_id: str) -> str:
        """The subscriber's stored cursor, or ``log_id`` stored as its first one."""
        self.conn.hsetnx(self.cursors, subscriber, log_id)
        return self.cursor(subscriber) or log_id


def _num(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() else value


def _raise_unless_wrong_type(reply: Any) -> None:
    """A change's record is a hash while pending and a string once decided: a reply of
    the other type's command is WRONGTYPE, expected; any other error is raised."""
    if isinstance(reply, Exception) and not str(reply).startswith("WRONGTYPE"):
        raise reply


def outcome_from_text(change_id: str, text: bytes) -> ChangeOutcome:
    """An outcome as state_apply.lua stores it: [status, reason, version | null, path,
    module]. Read back from Redis, so anything else is refused by name."""
    try:
        status, reason, version, path, module = json.loads(text)
        if not (isinstance(reason, str) and isinstance(path, str) and isinstance(module, str)
                and (version is None or is_whole(version))):
            raise ValueError
        return ChangeOutcome(change_id=change_id, status=ChangeStatus(status), reason=reason, version=version,
                             path=path or None, module_id=module or None)
    except (ValueError, TypeError):
        raise StateWriteError(f"the outcome record of change {change_id!r} is not one piano-dist wrote: "
                              f"{text[:80]!r}") from None


def parse_log_entry(log_id: str, raw: Mapping[Any, Any]) -> LogEntry:
    f = {as_text(k): as_text(v) for k, v in raw.items()}
    old = from_leaves(json.loads(f.get("old", "{}")))
    new = from_leaves(json.loads(f.get("new", "{}")))
    change = StateChange(
        change_id=f.get("id", ""), module_id=f.get("module", ""), change_type=StateChangeType(f.get("type", "update")),
        path=f.get("path", ""), old_value=None if old is MISSING else old, new_value=None if new is MISSING else new,
        timestamp=int(f.get("ts", "0")) / 1000.0, priority=_num(f.get("priority", "0")),
        metadata=json.loads(f.get("meta") or "{}"), applied=True, version=int(f.get("version", "0")),
        log_id=log_id, transaction_id=f.get("tx") or None,
    )
    return LogEntry(log_id=log_id, change=change, new=new)
