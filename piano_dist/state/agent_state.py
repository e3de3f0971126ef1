"""RedisAgentState: an agent's state read and written straight from Redis.

Workers in other processes build modules without the user's object:
``ModuleClass(RedisAgentState(agent_id))``. Attribute reads (``state.name``,
``state.emotional_state``) return the current JSON values from Redis; ``get(path)`` and
``set(path, value)`` take dotted paths. Values returned are copies: mutating
``state.emotional_state['happiness']`` in place changes nothing in Redis; write with
``state.set('emotional_state.happiness', 0.8)`` (or a StateCoordinator proposal).
"""
from __future__ import annotations

from typing import Any, Optional

import redis

from .fence import current_fence
from .paths import validate_agent_id, validate_state_path
from .proposal import make_proposal
from .store import StateStore
from .tree import MISSING
from .types import StateChangeType

DEFAULT_AGENT_ID = "default"
DIRECT_WRITER = "direct"


class RedisAgentState:
    def __init__(self, agent_id: str, connection: Optional[redis.Redis] = None, prefix: Optional[str] = None,
                 *, redis_url: Optional[str] = None, store: Optional[StateStore] = None):
        object.__setattr__(self, "_store", store or StateStore(agent_id, connection, prefix, redis_url=redis_url))

    @property
    def agent_id(self) -> str:
        return self._store.agent_id

    @property
    def store(self) -> StateStore:
        return self._store

    # --- attribute-style access ----------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        value = self._store.read(name)
        if value is MISSING:
            raise AttributeError(f"agent {self.agent_id!r} has no state {name!r}")
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            raise AttributeError(f"cannot set private attribute {name!r} on RedisAgentState")
        self.set(name, value)

    def __delattr__(self, name: str) -> None:
        self.delete(name)

    def __getitem__(self, path: str) -> Any:
        value = self._store.read(validate_state_path(path))
        if value is MISSING:
            raise KeyError(path)
        return value

    def __setitem__(self, path: str, value: Any) -> None:
        self.set(path, value)

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and self._store.read(path) is not MISSING

    def __repr__(self) -> str:
        return f"RedisAgentState(agent_id={self.agent_id!r})"

    # --- dotted paths --------------------------------------------------------------
    def get(self, path: str, default: Any = None) -> Any:
        value = self._store.read(validate_state_path(path))
        return default if value is MISSING else value

    def set(self, path: str, value: Any, *, module_id: str = DIRECT_WRITER,
            expected_version: Optional[int] = None) -> int:
        """Write ``value`` at ``path`` now (versioned, logged, notified); returns the new
        state version. StateConflictError if ``expected_version`` is stale."""
        return self._write(module_id, path, value, StateChangeType.UPDATE, expected_version)

    def delete(self, path: str, *, module_id: str = DIRECT_WRITER) -> int:
        return self._write(module_id, path, None, StateChangeType.DELETE, None)

    def _write(self, module_id: str, path: str, value: Any, change_type: StateChangeType,
               expected_version: Optional[int]) -> Optional[int]:
        # None only for a repeated write whose outcome record lost its version (by hand).
        proposal = make_proposal(module_id, path, value, change_type, expected_version=expected_version)
        fence = current_fence()
        [(_, version)] = self._store.apply_atomic([proposal.atomic()], fence)
        return version

    def to_dict(self) -> dict[str, Any]:
        return self._store.read_all()

    @property
    def version(self) -> int:
        return self._store.version()

    def path_version(self, path: str) -> int:
        return self._store.path_version(validate_state_path(path))


def agent_id_of(agent_state: Any, agent_id: Optional[str] = None) -> str:
    """The agent id for ``agent_state``: the explicit one, else its ``agent_id`` or
    ``name`` (attribute or key), else "default"."""
    if agent_id is not None:
        return validate_agent_id(agent_id)
    if isinstance(agent_state, RedisAgentState):
        return agent_state.agent_id
    for name in ("agent_id", "name"):
        if isinstance(agent_state, dict):
            candidate = agent_state.get(name)
        else:
            candidate = getattr(agent_state, name, None) if agent_state is not None else None
        if isinstance(candidate, str) and candidate:
            return validate_agent_id(candidate)
    return DEFAULT_AGENT_ID
