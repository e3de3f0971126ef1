"""Build module instances from their cluster registrations, once per process.

Registrations are read back from Redis, so they are untrusted: a class is imported only
when the process's AllowList allows its import path, and only a BaseModule subclass is
constructed (or any class, from an import path the AllowList lists explicitly).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from .allowlist import AllowList
from .registry import ModuleRegistration, ModuleRegistry, RegistrationError

log = logging.getLogger(__name__)


class ModuleLoadError(Exception):
    """This process cannot build the module (not allowed here, import failed, constructor
    raised, not registered): its tasks wait for a worker that can."""


class BrokenModuleError(Exception):
    """The module cannot run anywhere (its registration is corrupt, or its constructor
    raised SystemExit or another BaseException): its task ends failed."""


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
                 retry_after: float = 30.0, allowed: AllowList | None = None):
        self.registry = registry
        self.local = local if local is not None else {}
        self.agent_state_factory = agent_state_factory or default_agent_state
        self.retry_after = retry_after
        self.allowed = allowed if allowed is not None else AllowList.from_env()
        self._built: dict[str, tuple[str, Any]] = {}
        self._failed: dict[str, tuple[float, str, bytes]] = {}
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
            failed = self._failed.get(name)
            if failed and failed[2] == raw and time.monotonic() - failed[0] <= self.retry_after:
                raise ModuleLoadError(failed[1])
            registration = self._parsed.get(name)
            if registration is None or registration[0] != raw:
                try:
                    registration = (raw, ModuleRegistration.from_json(name, raw))
                except RegistrationError as exc:
                    raise BrokenModuleError(str(exc)) from None
                self._parsed[name] = registration
            registration = registration[1]
            cached = self._built.get(name)
            if cached and cached[0] == registration.class_path:
                return cached[1]
            if not self.allowed.allows(registration.class_path):
                reason = self.allowed.refusal(name, registration.class_path)
                self._failed[name] = (time.monotonic(), reason, raw)
                raise ModuleLoadError(reason)
            try:
                instance = self._build(registration)
            except Exception as exc:  # any failure to build means: not on this worker
                reason = f"{type(exc).__name__}: {exc}"
                self._failed[name] = (time.monotonic(), reason, raw)
                raise ModuleLoadError(reason) from exc
            except BaseException as exc:  # SystemExit & co. from module code: not ours to obey
                raise BrokenModuleError(f"building module {name!r} ({registration.class_path}) raised "
                                        f"{type(exc).__name__}: {exc}") from None
            self._failed.pop(name, None)
            self._built[name] = (registration.class_path, instance)
            return instance

    def _build(self, registration: ModuleRegistration) -> Any:
        cls = registration.import_class(plain_allowed=self.allowed.lists(registration.class_path))
        agent_state = self.agent_state_factory(registration.agent_id, self.registry.connection)
        factory = getattr(cls, "from_registration", None)
        if callable(factory):
            return factory(agent_state, registration.config)
        return cls(agent_state, **registration.config) if registration.config else cls(agent_state)

    def unloadable(self) -> dict[str, str]:
        """Modules this process recently failed to build, with why (the claim script sets
        their tasks aside for other workers)."""
        now = time.monotonic()
        with self._lock:
            for name, (when, _, _) in list(self._failed.items()):
                if now - when > self.retry_after:
                    del self._failed[name]
            # A module handed in locally since it failed (a manager registering it after its
            # slots started) is loadable now.
            return {name: reason for name, (_, reason, _) in sorted(self._failed.items()) if name not in self.local}
