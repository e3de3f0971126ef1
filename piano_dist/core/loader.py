"""Build module instances from their cluster registrations, once per process."""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from .registry import ModuleRegistration, ModuleRegistry

log = logging.getLogger(__name__)


class ModuleLoadError(Exception):
    """This process cannot build the module (import failed, constructor raised, …)."""


def default_agent_state(agent_id: str | None, connection) -> Any:
    """What a worker hands a module it builds: the agent's state as stored in Redis."""
    try:
        from ..state import RedisAgentState  # type: ignore
    except ImportError:
        return None
    return RedisAgentState(agent_id or "default", connection=connection)


class ModuleLoader:
    """Instances by module name: ones handed in by the local manager, else built from
    the registration. A module that failed to load is retried after ``retry_after``
    seconds, so a fixed deployment (new code on PYTHONPATH) heals without a restart."""

    def __init__(self, registry: ModuleRegistry, local: dict[str, Any] | None = None,
                 agent_state_factory: Callable[[str | None, Any], Any] | None = None,
                 retry_after: float = 30.0):
        self.registry = registry
        self.local = local if local is not None else {}
        self.agent_state_factory = agent_state_factory or default_agent_state
        self.retry_after = retry_after
        self._built: dict[str, tuple[str, Any]] = {}
        self._failed: dict[str, tuple[float, str]] = {}
        self._parsed: dict[str, tuple[bytes, ModuleRegistration]] = {}
        self._lock = threading.Lock()

    def get(self, name: str, raw_registration: bytes | None = None) -> Any:
        """The module's instance. ``raw_registration`` is its registration as just read
        from Redis (the claim script returns it: b"" when unregistered); without it the
        registration is read here."""
        if name in self.local:
            return self.local[name]
        if raw_registration is None:
            raw = self.registry.connection.hget(self.registry.keys.modules, name)
        else:
            raw = raw_registration or None
        with self._lock:
            if raw is None:
                raise ModuleLoadError(f"module {name!r} is not registered")
            registration = self._parsed.get(name)
            if registration is None or registration[0] != raw:
                registration = (raw, ModuleRegistration.from_json(name, raw))
                self._parsed[name] = registration
            registration = registration[1]
            cached = self._built.get(name)
            if cached and cached[0] == registration.class_path:
                return cached[1]
            try:
                instance = self._build(registration)
            except Exception as exc:  # any failure to build means: not on this worker
                reason = f"{type(exc).__name__}: {exc}"
                self._failed[name] = (time.monotonic(), reason)
                raise ModuleLoadError(reason) from exc
            self._failed.pop(name, None)
            self._built[name] = (registration.class_path, instance)
            return instance

    def _build(self, registration: ModuleRegistration) -> Any:
        cls = registration.import_class()
        agent_state = self.agent_state_factory(registration.agent_id, self.registry.connection)
        factory = getattr(cls, "from_registration", None)
        if callable(factory):
            return factory(agent_state, registration.config)
        return cls(agent_state, **registration.config) if registration.config else cls(agent_state)

    def unloadable(self) -> list[str]:
        """Modules this process recently failed to build (the claim script skips them)."""
        now = time.monotonic()
        with self._lock:
            for name, (when, _) in list(self._failed.items()):
                if now - when > self.retry_after:
                    del self._failed[name]
            return sorted(self._failed)
