"""Cluster-wide module registrations: name → class import path, config, runnable methods.

Any worker builds a module from its registration (import the class, construct it with
the agent's state and the config) and reuses that one instance for all its tasks.
"""
from __future__ import annotations

import importlib
import inspect
import json
import re
import types
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import redis

from ..errors import SecurityError, UnknownModuleError
from ..keys import Keys
from ..modules.base import BaseModule
from ..security import SecurityValidator

_BASE_ATTRS = frozenset(dir(BaseModule)) - {"run"}
_MODULE_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_QUALNAME_PART = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


class RegistrationError(ValueError):
    """A registration read back from Redis that is not one piano-dist wrote: the module's
    tasks cannot run anywhere, so they fail instead of waiting."""


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


@lru_cache(maxsize=1024)
def _runnable(cls: type) -> frozenset:
    return frozenset(runnable_methods(cls))


def method_problem(module: Any, method_name: Any) -> str | None:
    """Why ``module.method_name`` may not run as a task (None if it may): the method a
    task names is read back from Redis, so a worker checks it again before calling."""
    try:
        SecurityValidator.validate_method_name(method_name)
    except SecurityError as exc:
        return str(exc)
    if method_name not in _runnable(type(module)):
        return (f"module {type(module).__name__} has no public method {method_name!r} that tasks may run; "
                f"runnable: {', '.join(sorted(_runnable(type(module)))) or 'none'}")
    return None


def check_module_object(name: str, module: Any) -> None:
    """Any instance whose class defines public methods can be a module (BaseModule is the
    recommended base, not a requirement). Classes, Python modules and functions are
    refused: tasks run methods of one instance."""
    if module is None or isinstance(module, (type, types.ModuleType, types.FunctionType,
                                             types.BuiltinFunctionType, types.MethodType)):
        raise TypeError(f"module {name!r} must be an instance whose public methods run as tasks, "
                        f"not {module!r}")
    if not runnable_methods(type(module)):
        raise TypeError(f"module {name!r} ({type(module).__name__}) has no public methods to run as tasks")


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
        """Parse a registration read from Redis; RegistrationError says what is wrong."""
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RegistrationError(f"registration of module {name!r} is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise RegistrationError(f"registration of module {name!r} is a JSON {type(data).__name__}, "
                                    f"not an object")
        class_path = data.get("class")
        module_path, _, qualname = class_path.partition(":") if isinstance(class_path, str) else ("", "", "")
        if not (_MODULE_PATH.fullmatch(module_path) and qualname):
            raise RegistrationError(f"registration of module {name!r} names class {class_path!r}, which is "
                                    f"not 'package.module:Class'")
        config, methods, agent_id = data.get("config") or {}, data.get("methods") or [], data.get("agent_id")
        if not isinstance(config, dict) or not isinstance(methods, list) \
                or not (agent_id is None or isinstance(agent_id, str)):
            raise RegistrationError(f"registration of module {name!r} has a malformed config, methods "
                                    f"or agent_id")
        return cls(name, class_path, config, methods, agent_id)

    def import_class(self, plain_allowed: bool = False) -> type:
        """Import the registered class. Check the class path against the worker's
        AllowList first: importing a module runs its code. A class that is not a
        BaseModule subclass (a plain module) is accepted only with
        ``plain_allowed`` (its path listed explicitly in the AllowList)."""
        module_path, _, qualname = self.class_path.partition(":")
        if not all(_QUALNAME_PART.fullmatch(part) for part in qualname.split(".")):
            raise ImportError(f"{self.class_path} cannot be imported by name (a class defined in a "
                              f"function, or a private name)")
        obj: Any = importlib.import_module(module_path)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        if not isinstance(obj, type):
            raise TypeError(f"{self.class_path} is not a class")
        if not issubclass(obj, BaseModule) and not plain_allowed:
            raise TypeError(f"{self.class_path} is not a BaseModule subclass (a plain class is built only "
                            f"from an import path listed in PIANO_ALLOWED_MODULES or `--allow`)")
        return obj


class ModuleRegistry:
    def __init__(self, connection: redis.Redis, keys: Keys):
        self.connection = connection
        self.keys = keys

    def register(self, name: str, module: Any, config: dict | None = None,
                 agent_id: str | None = None) -> ModuleRegistration:
        SecurityValidator.validate_module_name(name)
        check_module_object(name, module)
        if config is not None and not isinstance(config, dict):
            raise TypeError(f"config for module {name!r} must be a dict, not {type(config).__name__}")
        SecurityValidator.validate_module_config(config, name)
        if agent_id is not None:
            SecurityValidator.validate_agent_id(agent_id)
        registration = ModuleRegistration(name, class_path(type(module)), config or {},
                                          runnable_methods(type(module)), agent_id)
        try:
            existing = self.get(name)
        except RegistrationError:
            existing = None  # a corrupt record is simply replaced
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
        """Every registration; a corrupt one is listed with the reason as its class path
        (which no worker can import), so one bad record does not hide the others."""
        out = {}
        for k, v in self.connection.hgetall(self.keys.modules).items():
            name = k.decode("utf-8", "replace")
            try:
                out[name] = ModuleRegistration.from_json(name, v)
            except RegistrationError as exc:
                out[name] = ModuleRegistration(name, f"<invalid: {exc}>")
        return out

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
