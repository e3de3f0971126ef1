"""Which resources exist (cluster-wide, in Redis) and this process's object for each."""
from __future__ import annotations

from typing import Any

import redis

from ..errors import ResourceBusyError, UnknownResourceError
from ..keys import Keys
from ..replies import as_text
from ..scripts import ScriptSet
from .arguments import require_id
from .status import registered_resources
from .types import ResourceType, parse_resource_type

_TYPES = {**{t.value: t for t in ResourceType}, **{t.value.encode(): t for t in ResourceType}}


def type_of(raw) -> ResourceType | None:
    """The ResourceType a registry value names, or None (missing or not a known type)."""
    return _TYPES.get(raw) if raw is not None else None


class ResourceRegistration:
    def __init__(self, connection: redis.Redis, keys: Keys, scripts: ScriptSet):
        self.connection = connection
        self.keys = keys
        self._scripts = scripts
        self.objects: dict[str, Any] = {}  # resource id -> this process's object

    def register(self, resource_id: str, resource: Any, resource_type: ResourceType) -> None:
        """Record the id and type cluster-wide; keep ``resource`` in this process.

        Registering an id that already exists with the same type adopts it (any process,
        any coordinator: this process's object becomes ``resource``, locks held on it stay
        as they are); a different type raises ValueError naming both.
        """
        require_id("resource_id", resource_id)
        kind = parse_resource_type(resource_type)
        if not self.connection.hsetnx(self.keys.resource_registry, resource_id, kind.value):
            existing = self.connection.hget(self.keys.resource_registry, resource_id)
            if type_of(existing) is not kind:
                raise ValueError(f"resource {resource_id!r} is already registered as type "
                                 f"{as_text(existing) if existing is not None else 'unknown'!r}, not "
                                 f"{kind.value!r}; unregister it first to change its type")
        self.objects[resource_id] = resource

    def attach(self, resource_id: str, resource: Any) -> None:
        """Give this process's object for a resource another process registered."""
        if not self.connection.hexists(self.keys.resource_registry, resource_id):
            raise UnknownResourceError(f"resource {resource_id!r} is not registered")
        self.objects[resource_id] = resource

    def unregister(self, resource_id: str) -> None:
        """KeyError if unknown; ResourceBusyError while it is held or waited for."""
        outcome = as_text(self._scripts.lock_unregister(
            keys=[self.keys.resource_base(resource_id), self.keys.resource_registry,
                  self.keys.lock_index, self.keys.lock_waitfor],
            args=[resource_id]))
        if outcome == "unknown":
            raise UnknownResourceError(f"resource {resource_id!r} is not registered")
        if outcome == "busy":
            raise ResourceBusyError(f"resource {resource_id!r} is still locked or waited for")
        self.objects.pop(resource_id, None)

    def registered(self) -> dict[str, str]:
        """resource id -> type name, cluster-wide."""
        return registered_resources(self.connection, self.keys)

    def type_of(self, resource_id: str) -> ResourceType | None:
        return type_of(self.connection.hget(self.keys.resource_registry, resource_id))
