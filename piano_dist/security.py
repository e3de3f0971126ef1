"""SecurityValidator: the rules every entry point applies to user input.

Rules (documented in the README's "Input rules" section):
- Execution arguments must be JSON values (str, int, float, bool, None, lists, dicts
  with string keys), nested at most ``MAX_DEPTH`` deep, at most ``MAX_PAYLOAD_BYTES``
  once encoded; floats must be finite. The error names the offending position,
  e.g. ``args[1]['when']``.
- Method names: identifiers, not private (``_x``) or dunder, defined on the module's
  class as a plain callable.
- State paths and memory content: see :func:`validate_state_path` and
  :func:`sanitize_memory_data`.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

from .errors import SecurityError
from .json_values import check_json_value

MAX_DEPTH = 32
MAX_PAYLOAD_BYTES = 1_000_000
MAX_NAME_LENGTH = 128
MAX_SECONDS = 366 * 86400  # timeouts and retry delays: up to a year
MAX_CONFIG_BYTES = 65_536  # a module's registered config (sent with every claimed task)
# Always fullmatch: with re.match, "$" also matches before a trailing newline.
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_MODULE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


def _check_json(value: Any, where: str, depth: int) -> None:
    check_json_value(value, where, MAX_DEPTH, depth)


# Stored payloads of tasks without arguments (compact and spaced JSON).
_NO_ARGUMENTS = frozenset(("[[],{}]", "[[], {}]"))


def _refuse_constant(name: str) -> Any:
    raise SecurityError(f"arguments hold {name}: only finite numbers are JSON values")


def _check_depth(container: Any, where: str, max_depth: int, depth: int = 0) -> None:
    """Nesting of parsed JSON (the items of ``container`` are one level deeper)."""
    if depth > max_depth:
        raise SecurityError(f"{where} is nested deeper than {max_depth} levels")
    items = container.values() if isinstance(container, dict) else container
    for item in items:
        if isinstance(item, (list, dict)):
            _check_depth(item, where, max_depth, depth + 1)


class SecurityValidator:
    """Validation entry points; each raises :class:`SecurityError` saying what was wrong."""

    @classmethod
    def validate_execution_args(cls, args: Any = (), kwargs: Any = None) -> tuple[list, dict]:
        """Check task arguments; return them as (list, dict) ready to encode."""
        args, kwargs, _, _ = cls.encode_execution_args(args, kwargs)
        return args, kwargs

    @classmethod
    def encode_execution_args(cls, args: Any = (), kwargs: Any = None) -> tuple[list, dict, str, str]:
        """:meth:`validate_execution_args`, also returning ``json.dumps`` of the args list and
        of the kwargs dict (``json.dumps([args, kwargs])`` is ``f"[{args_json}, {kwargs_json}]"``),
        so a caller encodes them once."""
        if args is None:
            args = ()
        if not isinstance(args, (list, tuple)):
            raise SecurityError(f"args must be a list or tuple, not {type(args).__name__}")
        if kwargs is None:
            kwargs = {}
        if not isinstance(kwargs, dict):
            raise SecurityError(f"kwargs must be a dict, not {type(kwargs).__name__}")
        for i, value in enumerate(args):
            _check_json(value, f"args[{i}]", 1)
        for key, value in kwargs.items():
            if not isinstance(key, str) or not _IDENTIFIER.fullmatch(key):
                raise SecurityError(f"kwargs key {key!r} is not a valid keyword argument name")
            _check_json(value, f"kwargs[{key!r}]", 1)
        args, kwargs = list(args), dict(kwargs)
        args_json, kwargs_json = json.dumps(args), json.dumps(kwargs)
        size = len(args_json) + len(kwargs_json) + 4  # len(json.dumps([args, kwargs]))
        if size > MAX_PAYLOAD_BYTES:
            raise SecurityError(f"arguments are {size} bytes encoded; the limit is {MAX_PAYLOAD_BYTES}")
        return args, kwargs, args_json, kwargs_json

    @classmethod
    def validate_seconds(cls, value: Any, what: str, allow_zero: bool = False) -> float:
        """A duration in seconds: a finite number, positive (or zero when allowed), at most
        MAX_SECONDS."""
        ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
              and (value >= 0 if allow_zero else value > 0) and value <= MAX_SECONDS)
        if not ok:
            kind = "non-negative" if allow_zero else "positive"
            raise SecurityError(f"{what} must be a {kind} number of seconds up to {MAX_SECONDS}, not {value!r}")
        return value

    @classmethod
    def validate_module_config(cls, config: Any, name: str) -> dict:
        if config is None:
            return {}
        if not isinstance(config, dict):
            raise SecurityError(f"config for module {name!r} must be a dict, not {type(config).__name__}")
        _check_json(config, f"config of module {name!r}", 0)
        size = len(json.dumps(config))
        if size > MAX_CONFIG_BYTES:
            raise SecurityError(f"config of module {name!r} is {size} bytes encoded; the limit is {MAX_CONFIG_BYTES}")
        return config

    @classmethod
    def validate_agent_id(cls, agent_id: Any) -> str:
        from .agent_ids import validate_agent_id

        return validate_agent_id(agent_id)

    @classmethod
    def decode_execution_args(cls, text: str) -> tuple[list, dict]:
        """Task arguments from their stored JSON ``[args, kwargs]`` (read back from Redis,
        so untrusted), checked by the rules of :meth:`validate_execution_args` without
        encoding them again: the size is the text's, NaN and infinities are refused as
        they are parsed, and JSON keys are strings already."""
        if text in _NO_ARGUMENTS:
            return [], {}
        if len(text) > MAX_PAYLOAD_BYTES:
            raise SecurityError(f"arguments are {len(text)} bytes encoded; the limit is {MAX_PAYLOAD_BYTES}")
        try:
            value = json.loads(text, parse_constant=_refuse_constant)
        except SecurityError:
            raise
        except ValueError as exc:
            raise SecurityError(f"arguments are not valid JSON: {exc}") from None
        if (not isinstance(value, list) or len(value) != 2 or not isinstance(value[0], list)
                or not isinstance(value[1], dict)):
            raise SecurityError("arguments are not a JSON [args, kwargs] pair")
        args, kwargs = value
        for key in kwargs:
            if not _IDENTIFIER.fullmatch(key):
                raise SecurityError(f"kwargs key {key!r} is not a valid keyword argument name")
        _check_depth(args, "args", MAX_DEPTH)
        _check_depth(kwargs, "kwargs", MAX_DEPTH)
        return args, kwargs

    @classmethod
    def encode_result(cls, value: Any) -> str:
        """Check a task's result by the rules of arguments (JSON values, finite numbers,
        string keys, nesting, size) and return it encoded: a result that would not come
        back as the same value is refused, not silently changed."""
        _check_json(value, "result", 0)
        text = json.dumps(value)
        if len(text) > MAX_PAYLOAD_BYTES:
            raise SecurityError(f"result is {len(text)} bytes encoded; the limit is {MAX_PAYLOAD_BYTES}")
        return text

    @classmethod
    def validate_method_name(cls, method_name: Any) -> str:
        if not isinstance(method_name, str) or not method_name:
            raise SecurityError(f"method name must be a non-empty string, not {method_name!r}")
        if method_name.startswith("_"):
            raise SecurityError(f"method {method_name!r} is private: only public methods can run as tasks")
        if len(method_name) > MAX_NAME_LENGTH or not _IDENTIFIER.fullmatch(method_name):
            raise SecurityError(f"method name {method_name!r} is not a Python identifier")
        return method_name

    @classmethod
    def validate_module_name(cls, name: Any) -> str:
        if not isinstance(name, str) or not name:
            raise SecurityError(f"module name must be a non-empty string, not {name!r}")
        if len(name) > MAX_NAME_LENGTH or not _MODULE_NAME.fullmatch(name):
            raise SecurityError(
                f"module name {name!r} is invalid: use letters, digits, '_', '.', '-' "
                f"(at most {MAX_NAME_LENGTH} characters, starting with a letter or digit)"
            )
        return name

    @classmethod
    def validate_json_value(cls, value: Any, where: str = "value") -> Any:
        _check_json(value, where, 1)
        return value

    @classmethod
    def validate_state_path(cls, path: Any) -> str:
        from .state.paths import validate_state_path

        return validate_state_path(path)

    @classmethod
    def sanitize_memory_data(cls, content, memory_type, importance, metadata=None):
        from .memory.validation import sanitize_memory_data

        return sanitize_memory_data(content, memory_type, importance, metadata)
