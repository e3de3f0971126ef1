"""The perception result cache, in Redis, shared by every process.

Keyed by the sha256 of the canonical JSON of (sensor, its input, processor version,
LLM identity), and read and written under that same key — the original read by input
hash and wrote by output hash (and used per-process salted hash()), so it never hit.
Entries expire after ``ttl`` seconds. Hits and misses are counted in one hash for all
processes, next to each module's own counts.
"""
from __future__ import annotations

import json
from typing import Any

import redis

from ..keys import Keys
from .plumbing import content_digest
from .sensors import PROCESSOR_VERSION, SensorType


class PerceptionCache:
    def __init__(self, connection: redis.Redis, keys: Keys, ttl: float = 300.0):
        self.connection = connection
        self.keys = keys
        self.ttl_ms = max(1, int(ttl * 1000))

    def key_for(self, sensor: SensorType, sensor_input: dict, llm: str | None) -> str:
        digest = content_digest({"sensor": sensor.value, "input": sensor_input,
                                 "version": PROCESSOR_VERSION, "llm": llm})
        return self.keys.perception_cache(sensor.value, digest)

    def get_many(self, keys: list[str]) -> list[dict[str, Any] | None]:
        """Cached results for these keys (None where absent), in one round trip."""
        if not keys:
            return []
        return [json.loads(raw) if raw is not None else None for raw in self.connection.mget(keys)]

    def get(self, key: str) -> dict[str, Any] | None:
        found = self.get_many([key])[0]
        self.record({}, hits=int(found is not None), misses=int(found is None))
        return found

    def record(self, new_entries: dict[str, tuple[Any, float]], hits: int, misses: int) -> None:
        """Store new results and count one lookup round's hits and misses, in one round trip."""
        pipe = self.connection.pipeline(transaction=False)
        for key, (processed_data, confidence) in new_entries.items():
            pipe.set(key, json.dumps({"processed_data": processed_data, "confidence": confidence},
                                     separators=(",", ":")), px=self.ttl_ms)
        stats = self.keys.perception_cache_stats
        for field, count in (("hits", hits), ("misses", misses), ("writes", len(new_entries))):
            if count:
                pipe.hincrby(stats, field, count)
        if len(pipe):
            pipe.execute()

    def put(self, key: str, processed_data: Any, confidence: float) -> None:
        self.record({key: (processed_data, confidence)}, 0, 0)

    def stats(self) -> dict[str, int]:
        raw = self.connection.hgetall(self.keys.perception_cache_stats)
        counts = {k.decode(): int(v) for k, v in raw.items()}
        return {name: counts.get(name, 0) for name in ("hits", "misses", "writes")}
