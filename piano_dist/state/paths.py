"""Validation rules for agent-state input: paths, values, agent and snapshot ids.

These are the rules :meth:`piano_dist.SecurityValidator.validate_state_path` applies.
Every rule raises :class:`piano_dist.errors.SecurityError` with a message that names the
offending input, so a caller never has to guess why a write was refused.

- A state path is one or more dot-separated segments, each an identifier
  (``[A-Za-z][A-Za-z0-9_]*``, at most 64 characters), at most ``MAX_PATH_DEPTH``
  segments and ``MAX_PATH_LENGTH`` characters in all. Segments starting with ``_``
  (private and dunder names) are refused: attribute-style mirroring must never reach
  ``__class__`` or ``_private`` internals of the user's object.
- A state value is JSON: None, bool, int, finite float, str, list/tuple, dict with
  string keys; nested at most ``MAX_VALUE_DEPTH`` deep and at most ``MAX_VALUE_BYTES``
  once encoded.
"""
from __future__ import annotations

import json
import re
from typing import Any

from ..agent_ids import validate_agent_id  # noqa: F401  (the state's import point)
from ..errors import SecurityError
from ..json_values import check_json_value

MAX_PATH_LENGTH = 255
MAX_PATH_DEPTH = 16
MAX_SEGMENT_LENGTH = 64
MAX_VALUE_DEPTH = 32
MAX_VALUE_BYTES = 1_000_000
MAX_ID_LENGTH = 128

# Matched with fullmatch: with re.match, "$" also matches before a trailing newline.
_SEGMENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_SNAPSHOT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]*")


def is_path_segment(name: Any) -> bool:
    """True if ``name`` may be one segment of a state path (used when flattening dicts)."""
    return isinstance(name, str) and len(name) <= MAX_SEGMENT_LENGTH and bool(_SEGMENT.fullmatch(name))


def validate_state_path(path: Any) -> str:
    """Return ``path`` if it is a valid dotted state path, else raise SecurityError."""
    if not isinstance(path, str):
        raise SecurityError(f"state path must be a string, got {type(path).__name__}")
    if not path:
        raise SecurityError("state path is empty")
    if len(path) > MAX_PATH_LENGTH:
        raise SecurityError(f"state path is {len(path)} characters long; the limit is {MAX_PATH_LENGTH}")
    segments = path.split(".")
    if len(segments) > MAX_PATH_DEPTH:
        raise SecurityError(f"state path {path!r} has {len(segments)} segments; the limit is {MAX_PATH_DEPTH}")
    for segment in segments:
        if not segment:
            raise SecurityError(f"state path {path!r} has an empty segment")
        if segment.startswith("_"):
            raise SecurityError(
                f"state path {path!r} has private or dunder segment {segment!r}; "
                "segments must not start with '_'"
            )
        if not is_path_segment(segment):
            raise SecurityError(
                f"state path {path!r} has invalid segment {segment!r}; segments are identifiers "
                f"(a letter, then letters, digits or '_', at most {MAX_SEGMENT_LENGTH} characters)"
            )
    return path


def validate_state_value(value: Any, where: str = "state value") -> Any:
    """Return ``value`` if it is a bounded JSON value, else raise SecurityError."""
    _check(value, where, 0)
    size = len(json.dumps(value, separators=(",", ":")))
    if size > MAX_VALUE_BYTES:
        raise SecurityError(f"{where} is {size} bytes once encoded; the limit is {MAX_VALUE_BYTES}")
    return value


def _check(value: Any, where: str, depth: int) -> None:
    check_json_value(value, where, MAX_VALUE_DEPTH, depth)


def validate_snapshot_id(snapshot_id: Any) -> str:
    if not isinstance(snapshot_id, str) or not _SNAPSHOT_ID.fullmatch(snapshot_id) \
            or len(snapshot_id) > MAX_ID_LENGTH:
        raise SecurityError(
            f"snapshot id {snapshot_id!r} is invalid: 1-{MAX_ID_LENGTH} characters from letters, "
            "digits, '_', '.', ':', '-', starting with a letter or digit"
        )
    return snapshot_id


def validate_module_id(module_id: Any) -> str:
    if not isinstance(module_id, str) or not module_id or len(module_id) > MAX_ID_LENGTH:
        raise SecurityError(f"module id must be a string of 1-{MAX_ID_LENGTH} characters, got {module_id!r}")
    return module_id
