"""What every Redis-backed memory shares: where its keys live, how it writes, how it
travels to another process.

A memory is identified by (prefix, agent_id, kind, name); any process that constructs
one with the same identity sees the same data. Every write goes through one Lua script
that first checks the caller's fencing token, so a lock holder that was paused past its
lease cannot overwrite the work of the holder that replaced it.
"""
from __future__ import annotations

import json
from typing import Any, ClassVar

import redis

from ..connection import connection_url, get_connection
from ..keys import Keys
from ..scripts import ScriptSet
from . import fencing
from .validation import validate_agent_id, validate_label


class MemoryStore:
    #: short name used in key names ("buffer", "episodic", …)
    kind: ClassVar[str] = ""
    #: the ResourceType value a coordinator registers this memory under
    resource_type_name: ClassVar[str] = ""
    #: parts (key suffixes) cleared by clear(); subclasses with per-item keys add a glob
    parts: ClassVar[tuple[str, ...]] = ()
    dynamic_parts: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, agent_id: str = "default", name: str = "default",
                 redis_url: str | None = None, connection: redis.Redis | None = None,
                 prefix: str | None = None, resource_id: str | None = None):
        self.agent_id = validate_agent_id(agent_id)
        self.name = validate_label(name, "name")
        if "{" in self.name or "}" in self.name or ":" in self.name:
            raise ValueError(f"name must not contain braces or ':': {name!r}")
        self.resource_id = resource_id or self.resource_type_name
        self.connection = get_connection(redis_url, connection)
        self.keys = Keys(prefix)
        self.scripts = ScriptSet(self.connection)
        self.key_base = self.keys.memory_base(self.agent_id, self.kind, self.name)

    # --- keys ------------------------------------------------------------------------
    def _key(self, part: str) -> str:
        return self.keys.memory_key(self.agent_id, self.kind, self.name, part)

    # --- writes ----------------------------------------------------------------------
    def _write(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run a write script with the fence of the lock this caller holds, if any."""
        fence = fencing.current_fence(self.resource_id)
        fence_key, token = (fence[0], str(fence[1])) if fence else ("", "0")
        try:
            return getattr(self.scripts, script)(keys=keys, args=[fence_key, token, *args])
        except redis.ResponseError as exc:
            fencing.raise_if_fenced(exc, f"write to memory {self.resource_id!r}", self.resource_id)
            raise

    def clear(self) -> None:
        """Forget everything this memory holds (ids keep counting up)."""
        keys = [self._key(p) for p in self.parts]
        for part in self.dynamic_parts:
            keys.extend(k.decode() for k in self.connection.scan_iter(match=self._key(part) + ":*", count=500))
        self._write("memory_clear", keys, [])

    # --- helpers ---------------------------------------------------------------------
    @staticmethod
    def _dumps(obj: Any) -> str:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)

    @staticmethod
    def _loads(raw: bytes | str | None) -> Any:
        return None if raw is None else json.loads(raw)

    # --- travelling between processes ---------------------------------------------------
    def spec(self) -> dict:
        """JSON-safe description from which another process rebuilds this memory."""
        return {
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "redis_url": connection_url(self.connection),
            "prefix": self.keys.prefix,
            "agent_id": self.agent_id,
            "name": self.name,
            "resource_id": self.resource_id,
            "config": self._config(),
        }

    def _config(self) -> dict:
        return {}

    @classmethod
    def from_spec(cls, spec: dict, connection: redis.Redis | None = None) -> "MemoryStore":
        kwargs = dict(spec.get("config") or {})
        kwargs.update(agent_id=spec["agent_id"], name=spec["name"], prefix=spec["prefix"],
                      resource_id=spec["resource_id"])
        if connection is not None:
            kwargs["connection"] = connection
        else:
            kwargs["redis_url"] = spec["redis_url"]
        return cls(**kwargs)

    def __reduce__(self):
        return (_rebuild, (type(self), self.spec()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(agent_id={self.agent_id!r}, name={self.name!r}, {self._config()})"


def _rebuild(cls, spec):
    return cls.from_spec(spec)
