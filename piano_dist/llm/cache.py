"""Model replies shared through Redis (PIANO_LLM_CACHE=1): an identical request — same
model, messages and parameters — from any worker is answered without calling the
endpoint. Only requests whose answer is meant to repeat are cached: temperature 0 or an
explicit seed (and embeddings, which are deterministic)."""
from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import redis

from ..keys import Keys

log = logging.getLogger("piano_dist.llm")

MAX_CACHED_BYTES = 1 << 20


def cacheable(kind: str, body: dict) -> bool:
    if kind == "embed":
        return True
    if body.get("stream"):
        return False
    if body.get("seed") is not None:
        return True
    temperature = body.get("temperature")
    return isinstance(temperature, (int, float)) and not isinstance(temperature, bool) and temperature == 0


def request_digest(kind: str, body: dict) -> str:
    canonical = json.dumps({"kind": kind, "body": body}, sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class ResponseCache:
    def __init__(self, connection: redis.Redis, keys: Keys, ttl: float):
        self.connection = connection
        self.keys = keys
        self.ttl_ms = max(1, int(ttl * 1000))

    def get(self, digest: str) -> dict | None:
        """The cached reply, or None (also for an entry that does not look like one of
        ours: what Redis holds is not trusted)."""
        try:
            raw = self.connection.get(self.keys.llm_cache(digest))
        except redis.RedisError as exc:
            log.warning("LLM cache unreadable (%s); calling the endpoint", exc)
            return None
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return None
        return value if isinstance(value, dict) else None

    def put(self, digest: str, value: dict) -> None:
        data = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        if len(data) > MAX_CACHED_BYTES:
            return
        try:
            self.connection.set(self.keys.llm_cache(digest), data, px=self.ttl_ms)
        except redis.RedisError as exc:
            log.warning("LLM cache not written (%s)", exc)


def cached_value(kind: str, entry: dict | None) -> Any:
    """The answer inside a cache entry, or None when the entry is not a valid one."""
    if entry is None:
        return None
    value = entry.get("value")
    if kind == "embed":
        if isinstance(value, list) and value and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
            return [float(x) for x in value]
        return None
    return value if isinstance(value, str) else None
