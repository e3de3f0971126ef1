"""Shared mechanics of the two stream memories (CircularBuffer, TemporalMemory):
records in a hash, an order index, access counts kept beside the records so reads never
rewrite a record.
"""
from __future__ import annotations

import time
from typing import Any, Iterable

from .store import MemoryStore


class StreamStore(MemoryStore):
    id_prefix = "mem_"
    parts = ("records", "order", "access_n", "access_t")

    def _append(self, body: dict, bound: int, *, expire_before: float | None = None,
                score: float | None = None) -> tuple[str, int]:
        new_id, removed = self._write(
            "memory_stream_add",
            [self._key("records"), self._key("order"), self._key("seq"),
             self._key("access_n"), self._key("access_t")],
            [self.id_prefix, self._dumps(body), bound,
             "" if expire_before is None else repr(expire_before),
             "" if score is None else repr(score)],
        )
        return new_id.decode(), int(removed)

    def _remove(self, ids: Iterable[str]) -> int:
        ids = list(ids)
        if not ids:
            return 0
        return int(self._write(
            "memory_remove",
            [self._key("records"), self._key("order"), self._key("access_n"), self._key("access_t")],
            ids,
        ))

    def mark_accessed(self, ids: Iterable[str], when: float | None = None) -> int:
        """Count an access of these entries (reads do not, so READ locks stay read-only)."""
        ids = list(ids)
        if not ids:
            return 0
        return int(self.scripts.memory_touch(
            keys=[self._key("records"), self._key("access_n"), self._key("access_t")],
            args=[repr(time.time() if when is None else float(when)), "1", *ids],
        ))

    # --- reads -----------------------------------------------------------------------
    def _ids(self, start: int = 0, stop: int = -1, newest_first: bool = True) -> list[str]:
        fetch = self.connection.zrevrange if newest_first else self.connection.zrange
        return [i.decode() for i in fetch(self._key("order"), start, stop)]

    def _ids_by_score(self, low: float, high: float) -> list[str]:
        return [i.decode() for i in self.connection.zrangebyscore(self._key("order"), low, high)]

    def _load(self, ids: list[str]) -> list[dict]:
        """Records for ids, in that order; ids evicted meanwhile are skipped."""
        if not ids:
            return []
        pipe = self.connection.pipeline(transaction=False)
        pipe.hmget(self._key("records"), ids)
        pipe.hmget(self._key("access_n"), ids)
        pipe.hmget(self._key("access_t"), ids)
        raw, counts, lasts = pipe.execute()
        out = []
        for body, count, last in zip(raw, counts, lasts):
            if body is None:
                continue
            record = self._loads(body)
            record["accessed_count"] = int(count or 0)
            record["last_accessed"] = float(last) if last is not None else None
            out.append(record)
        return out

    def __len__(self) -> int:
        return int(self.connection.zcard(self._key("order")))

    def ids(self) -> list[str]:
        """Entry ids, oldest first."""
        return self._ids(newest_first=False)

    def _all(self) -> list[dict[str, Any]]:
        return self._load(self._ids(newest_first=True))
