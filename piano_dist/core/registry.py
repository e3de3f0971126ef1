"""Cluster-wide module registrations: name → class import path, config, runnable methods.

Any worker builds a module from its registration (import the class, construct it with
the agent's state and the config) and reuses that one instance for all its tasks.
"""
from __future__ import annotations

import importlib
import inspect
import json
from dataclasses import dataclass, field
from typing import Any

import redis

from ..errors import SecurityError, UnknownModuleError
from ..keys import Keys
from ..modules.base import BaseModule
from ..security import SecurityValidator

_BASE_ATTRS = frozenset(dir(BaseModule)) - {"run"}


def runnable_methods(cls: type) -> list[str]:
    """Public plain methods defined on the class (BaseModule's plumbing excluded, run kept)."""
    names = []
    for name, attr in inspect.getmembers(cls):
        if name.startswith("_") or name in _BASE_ATTRS:
            continue
        raw = inspect.getattr_static(cls, name)
        if isinstance(raw, (property, staticmethod, classmethod)) or not callable(attr):
            continue
        names.append(name)
    return sorted(names)


def class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


@dataclass
class ModuleRegistration:
    name: str
    class_path: str
    config: dict = field(default_factory=dict)
    methods: list = field(default_factory=list)
    agent_id: str | None = None

    def to_json(self) -> str:
        return json.dumps({"class": self.class_path, "config": self.config, "methods": self.methods,
                           "agent_id": self.agent_id})

    @classmethod
    def from_json(cls, name: str, raw: bytes | str) -> "ModuleRegistration":
        data = json.loads(raw)
        return cls(name, data["class"], data.get("config") or {}, data.get("methods") or [],
                   data.get("agent_id"))

    def import_class(self) -> type:
        module_path, _, qualname = self.class_path.partition(":")
        obj: Any = importlib.import_module(module_path)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        return obj


class ModuleRegistry:
    def __init__(self, connection: redis.Redis, keys: Keys):
        self.connection = connection
        self.keys = keys

    def register(self, name: str, module: Any, config: dict | None = None,
                 agent_id: str | None = None) -> ModuleRegistration:
        SecurityValidator.validate_module_name(name)
        if not isinstance(module, BaseModule):
            raise TypeError(f"module {name!r} must be a BaseModule instance, not {type(module).__name__}")
        if config is not None and not isinstance(config, dict):
            raise TypeError(f"config for module {name!r} must be a dict, not {type(config).__name__}")
        SecurityValidator.validate_json_value(config or {}, f"config of module {name!r}")
        registration = ModuleRegistration(name, class_path(type(module)), config or {},
                                          runnable_methods(type(module)), agent_id)
        existing = self.get(name)
        if existing is not None and existing.class_path != registration.class_path:
            raise ValueError(
                f"module {name!r} is already registered in this cluster as {existing.class_path}; "
                f"unregister it first to register {registration.class_path}"
            )
        self.connection.hset(self.keys.modules, name, registration.to_json())
        return registration

    def unregister(self, name: str) -> None:
        if not self.connection.hdel(self.keys.modules, name):
            raise UnknownModuleError(f"module {name!r} is not registered")
        self.connection.srem(self.keys.paused_modules, name)

    def get(self, name: str) -> ModuleRegistration | None:
        raw = self.connection.hget(self.keys.modules, name)
        return ModuleRegistration.from_json(name, raw) if raw else None

    def require(self, name: str) -> ModuleRegistration:
        if not isinstance(name, str):
            raise UnknownModuleError(f"module name must be a string, not {type(name).__name__}")
        registration = self.get(name)
        if registration is None:
            known = ", ".join(sorted(self.names())) or "none"
            raise UnknownModuleError(f"module {name!r} is not registered (registered: {known})")
        return registration

    def all(self) -> dict[str, ModuleRegistration]:
        return {k.decode(): ModuleRegistration.from_json(k.decode(), v)
                for k, v in self.connection.hgetall(self.keys.modules).items()}

    def names(self) -> list[str]:
        return [k.decode() for k in self.connection.hkeys(self.keys.modules)]

    def check_method(self, registration: ModuleRegistration, method_name: Any) -> str:
        SecurityValidator.validate_method_name(method_name)
        if method_name not in registration.methods:
            raise SecurityError(
                f"module {registration.name!r} ({registration.class_path}) has no public method "
                f"{method_name!r}; runnable: {', '.join(registration.methods) or 'none'}"
            )
        return method_name

    def paused(self) -> set[str]:
        return {m.decode() for m in self.connection.smembers(self.keys.paused_modules)}
