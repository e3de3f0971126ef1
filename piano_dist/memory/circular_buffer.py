"""Working memory: the last ``max_size`` memories of an agent, each kept at most
``retention_minutes``. Shared by every process that names the same agent."""
from __future__ import annotations

import time
from collections import Counter
from typing import Any

from ..arguments import is_whole
from .stream import StreamStore
from .timeutil import from_epoch
from .validation import sanitize_memory_data, validate_content, validate_importance


class CircularBuffer(StreamStore):
    kind = "buffer"
    resource_type_name = "circular_buffer"
    id_prefix = "mem_"

    def __init__(self, max_size: int = 20, retention_minutes: float = 60, **where):
        if not is_whole(max_size) or max_size < 1:
            raise ValueError(f"max_size must be a positive int, not {max_size!r}")
        if retention_minutes is None or retention_minutes <= 0:
            raise ValueError(f"retention_minutes must be positive, not {retention_minutes!r}")
        self.max_size = max_size
        self.retention_minutes = float(retention_minutes)
        super().__init__(**where)

    def _config(self) -> dict:
        return {"max_size": self.max_size, "retention_minutes": self.retention_minutes}

    def _cutoff(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.retention_minutes * 60

    # --- writes ------------------------------------------------------------------------
    def add_memory(self, content: str, memory_type: str = "event", importance: float = 0.5,
                   metadata: dict | None = None) -> dict:
        """Store a memory; the oldest (and expired) ones go so at most max_size remain."""
        content, memory_type, importance, metadata = sanitize_memory_data(
            content, memory_type, importance, metadata)
        now = time.time()
        body = {"content": content, "type": memory_type, "timestamp": now,
                "importance": importance, "metadata": metadata}
        new_id, _ = self._append(body, self.max_size, expire_before=self._cutoff(now))
        return self._public({"id": new_id, **body, "accessed_count": 0, "last_accessed": None})

    def cleanup_expired_memories(self) -> int:
        """Drop memories older than the retention window; returns how many went."""
        cutoff = self._cutoff()
        expired = [r["id"] for r in self._all() if r["timestamp"] < cutoff]
        return self._remove(expired)

    # --- reads -------------------------------------------------------------------------
    def _live(self) -> list[dict]:
        cutoff = self._cutoff()
        return [r for r in self._all() if r["timestamp"] >= cutoff]

    def get_recent_memories(self, count: int = 5) -> list[dict]:
        """The ``count`` newest memories, newest first (none for count <= 0)."""
        if not is_whole(count):
            raise ValueError(f"count must be an int, not {count!r}")
        if count <= 0:
            return []
        return [self._public(r) for r in self._live()[:count]]

    def get_memories_by_type(self, memory_type: str) -> list[dict]:
        return [self._public(r) for r in self._live() if r["type"] == memory_type]

    def get_important_memories(self, threshold: float = 0.7) -> list[dict]:
        threshold = validate_importance(threshold, "threshold")
        return [self._public(r) for r in self._live() if r["importance"] >= threshold]

    def search_memories(self, query: str) -> list[dict]:
        """Case-insensitive substring search over content, newest first."""
        needle = validate_content(query, "query").lower()
        return [self._public(r) for r in self._live() if needle in r["content"].lower()]

    def get_memory_summary(self) -> dict[str, Any]:
        records = self._live()
        stamps = [r["timestamp"] for r in records]
        return {
            "total_memories": len(records),
            "memory_types": dict(Counter(r["type"] for r in records)),
            "avg_importance": (sum(r["importance"] for r in records) / len(records)) if records else 0.0,
            "oldest_memory": from_epoch(min(stamps)) if stamps else None,
            "newest_memory": from_epoch(max(stamps)) if stamps else None,
            "buffer_utilization": len(records) / self.max_size,
        }

    def to_dict(self) -> dict:
        return {"max_size": self.max_size, "retention_minutes": self.retention_minutes,
                "memories": [self._public(r) for r in reversed(self._live())]}

    @staticmethod
    def _public(record: dict) -> dict:
        out = dict(record)
        out["timestamp"] = from_epoch(record["timestamp"])
        out["last_accessed"] = from_epoch(record.get("last_accessed"))
        return out
