"""Time-indexed memory whose strength decays: strength = importance·e^(−decay·age_h)
plus a bonus for explicit accesses (at most 0.3), capped at 1.

Timestamps are epoch seconds in a sorted set, so a time range is one ZRANGEBYSCORE with
inclusive ends (no bucket walk that can skip the last bucket, no local-time keys that
break at DST changes). Reads never strengthen a memory; ``mark_accessed`` does.
"""
from __future__ import annotations

import math
import time
from collections import Counter
from datetime import datetime
from typing import Any

from .stream import StreamStore
from .timeutil import from_epoch, to_epoch
from .validation import sanitize_memory_data, validate_importance, validate_label

PATTERNS = ("same_hour", "same_day", "same_weekday")


class TemporalMemory(StreamStore):
    kind = "temporal"
    resource_type_name = "temporal_memory"
    id_prefix = "temp_mem_"

    def __init__(self, retention_hours: float = 1, decay_rate: float = 0.1,
                 temporal_resolution: int = 60, max_memories: int = 10_000, **where):
        if retention_hours is None or retention_hours <= 0:
            raise ValueError(f"retention_hours must be positive, not {retention_hours!r}")
        if decay_rate is None or decay_rate < 0:
            raise ValueError(f"decay_rate must be >= 0, not {decay_rate!r}")
        if not isinstance(max_memories, int) or max_memories < 1:
            raise ValueError(f"max_memories must be a positive int, not {max_memories!r}")
        self.retention_hours = float(retention_hours)
        self.decay_rate = float(decay_rate)
        self.temporal_resolution = int(temporal_resolution)
        self.max_memories = max_memories
        super().__init__(**where)

    def _config(self) -> dict:
        return {"retention_hours": self.retention_hours, "decay_rate": self.decay_rate,
                "temporal_resolution": self.temporal_resolution, "max_memories": self.max_memories}

    # --- writes ------------------------------------------------------------------------
    def add_memory(self, content: str, memory_type: str = "event", importance: float = 0.5,
                   context: dict | None = None, timestamp: datetime | float | None = None) -> str:
        content, memory_type, importance, context = sanitize_memory_data(
            content, memory_type, importance, context)
        ts = to_epoch(timestamp)
        body = {"content": content, "type": memory_type, "timestamp": ts,
                "importance": importance, "context": context}
        # Ordered by the memory's own time, so the oldest go first when over the bound.
        new_id, _ = self._append(body, self.max_memories, score=ts)
        return new_id

    def cleanup_expired_memories(self, strength_threshold: float = 0.05,
                                 current_time: datetime | float | None = None) -> int:
        """Forget memories older than ``retention_hours`` or weaker than the threshold."""
        threshold = validate_importance(strength_threshold, "strength_threshold")
        now = to_epoch(current_time, "current_time")
        cutoff = now - self.retention_hours * 3600
        doomed = [r["id"] for r in self._all()
                  if r["timestamp"] < cutoff or self._strength(r, now) < threshold]
        return self._remove(doomed)

    # --- strength ----------------------------------------------------------------------
    def _strength(self, record: dict, now: float) -> float:
        age_h = max(0.0, now - record["timestamp"]) / 3600
        value = record["importance"] * math.exp(-self.decay_rate * age_h)
        value += min(0.1 * record.get("accessed_count", 0), 0.3)
        return min(1.0, value)

    def get_memory_strength(self, memory_id: str, current_time: datetime | float | None = None) -> float:
        """Current strength, or 0.0 for a memory that is not (or no longer) stored."""
        records = self._load([memory_id])
        return self._strength(records[0], to_epoch(current_time, "current_time")) if records else 0.0

    # --- reads -------------------------------------------------------------------------
    def _public(self, record: dict, now: float) -> dict:
        out = dict(record)
        out["current_strength"] = self._strength(record, now)
        out["timestamp"] = from_epoch(record["timestamp"])
        out["last_accessed"] = from_epoch(record.get("last_accessed"))
        return out

    def retrieve_memories_by_timerange(self, start_time, end_time, memory_type: str | None = None,
                                       min_strength: float = 0.1) -> list[dict]:
        """Memories with start <= timestamp <= end, oldest first, at least min_strength strong."""
        start, end = to_epoch(start_time, "start_time"), to_epoch(end_time, "end_time")
        if end < start:
            raise ValueError("end_time is before start_time")
        min_strength = validate_importance(min_strength, "min_strength")
        now = time.time()
        out = []
        for record in self._load(self._ids_by_score(start, end)):
            if memory_type is not None and record["type"] != memory_type:
                continue
            public = self._public(record, now)
            if public["current_strength"] >= min_strength:
                out.append(public)
        return out

    def retrieve_recent_memories(self, hours_back: float = 1, memory_type: str | None = None,
                                 limit: int = 10) -> list[dict]:
        """The newest memories of the last ``hours_back`` hours, newest first."""
        if limit <= 0:
            return []
        now = time.time()
        ids = [i.decode() for i in self.connection.zrevrangebyscore(
            self._key("order"), now, now - float(hours_back) * 3600)]
        out = []
        for record in self._load(ids):
            if memory_type is None or record["type"] == memory_type:
                out.append(self._public(record, now))
                if len(out) >= limit:
                    break
        return out

    def retrieve_memories_by_pattern(self, pattern: str, reference_time=None) -> list[dict]:
        """Memories at the same hour of day, same calendar day or same weekday (local time)."""
        if pattern not in PATTERNS:
            raise ValueError(f"pattern must be one of {PATTERNS}, not {pattern!r}")
        ref = from_epoch(to_epoch(reference_time, "reference_time"))
        same = {
            "same_hour": lambda d: d.hour == ref.hour,
            "same_day": lambda d: d.date() == ref.date(),
            "same_weekday": lambda d: d.weekday() == ref.weekday(),
        }[pattern]
        now = time.time()
        return [self._public(r, now) for r in self._load(self._ids(newest_first=False))
                if same(from_epoch(r["timestamp"]))]

    def get_temporal_summary(self, hours_back: float = 24) -> dict[str, Any]:
        now = time.time()
        records = self._load([i.decode() for i in self.connection.zrangebyscore(
            self._key("order"), now - float(hours_back) * 3600, now)])
        strengths = [self._strength(r, now) for r in records]
        return {
            "total_memories": len(records),
            "memory_types": dict(Counter(r["type"] for r in records)),
            "hourly_distribution": dict(Counter(from_epoch(r["timestamp"]).hour for r in records)),
            "average_strength": sum(strengths) / len(strengths) if strengths else 0.0,
            "strong_memories": sum(1 for s in strengths if s >= 0.5),
            "time_span_hours": hours_back,
        }

    def get_memories_by_type(self, memory_type: str) -> list[dict]:
        memory_type = validate_label(memory_type, "memory_type")
        now = time.time()
        return [self._public(r, now) for r in self._all() if r["type"] == memory_type]
