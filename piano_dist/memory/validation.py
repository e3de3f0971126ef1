"""Rules for what may be stored in a memory: text, importance, metadata, identifiers.

SecurityValidator reuses these, so every rule raises :class:`SecurityError` with a
message naming the offending field. Content is stored as given (not HTML-escaped):
memories feed LLM prompts, where ``&amp;`` would be noise; escape when rendering HTML.
Markup that is only dangerous when rendered (script tags, ``javascript:`` URLs, event
handler attributes *inside a tag*) is refused outright.
"""
from __future__ import annotations

import html
import json
import math
import re
from typing import Any

from ..agent_ids import validate_agent_id  # noqa: F401  (the memories' import point)
from ..errors import SecurityError

MAX_CONTENT_CHARS = 10_000
MAX_LABEL_CHARS = 128
MAX_METADATA_BYTES = 64 * 1024
MAX_METADATA_DEPTH = 8
MAX_LIST_ITEMS = 1_000

_DANGEROUS_MARKUP = [
    (re.compile(r"<\s*script\b", re.I), "a <script> tag"),
    (re.compile(r"<\s*/\s*script\s*>", re.I), "a </script> tag"),
    (re.compile(r"\bjavascript\s*:", re.I), "a javascript: URL"),
    (re.compile(r"\bvbscript\s*:", re.I), "a vbscript: URL"),
    (re.compile(r"<\s*(iframe|object|embed)\b", re.I), "an iframe/object/embed tag"),
    # Only inside a tag: "one=1" or "Don said: on=off" in prose is innocent.
    (re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.I), "an event-handler attribute (on…=) in a tag"),
]
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def validate_content(content: Any, field_name: str = "content", *,
                     max_chars: int = MAX_CONTENT_CHARS, escape: bool = False) -> str:
    if not isinstance(content, str):
        raise SecurityError(f"{field_name} must be a string, not {type(content).__name__}")
    if len(content) > max_chars:
        raise SecurityError(f"{field_name} is {len(content)} characters; the limit is {max_chars}")
    if _CONTROL.search(content):
        raise SecurityError(f"{field_name} contains control characters")
    for pattern, what in _DANGEROUS_MARKUP:
        if pattern.search(content):
            raise SecurityError(f"{field_name} contains {what}")
    return html.escape(content) if escape else content


def validate_importance(value: Any, field_name: str = "importance", *,
                        low: float = 0.0, high: float = 1.0) -> float:
    if value is None or isinstance(value, bool):
        raise SecurityError(f"{field_name} must be a number in {low}..{high}, not {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SecurityError(f"{field_name} must be a number in {low}..{high}, not {value!r}") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise SecurityError(f"{field_name} must be in {low}..{high}, got {value!r}")
    return number


def validate_label(value: Any, field_name: str, *, allow_none: bool = False) -> str | None:
    """Short identifiers: memory types, names, keywords, participants, locations."""
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not value.strip():
        raise SecurityError(f"{field_name} must be a non-empty string, not {value!r}")
    if len(value) > MAX_LABEL_CHARS:
        raise SecurityError(f"{field_name} is {len(value)} characters; the limit is {MAX_LABEL_CHARS}")
    return validate_content(value, field_name)


def validate_labels(values: Any, field_name: str) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str) or not isinstance(values, (list, tuple, set, frozenset)):
        raise SecurityError(f"{field_name} must be a list of strings, not {type(values).__name__}")
    if len(values) > MAX_LIST_ITEMS:
        raise SecurityError(f"{field_name} has {len(values)} items; the limit is {MAX_LIST_ITEMS}")
    out: list[str] = []
    for i, value in enumerate(values):
        label = validate_label(value, f"{field_name}[{i}]")
        if label not in out:
            out.append(label)
    return out


def validate_metadata(metadata: Any, field_name: str = "metadata") -> dict:
    """A dict of JSON values (strings checked like content); anything else is refused."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise SecurityError(f"{field_name} must be a dict, not {type(metadata).__name__}")
    clean = _json_value(metadata, field_name, 0)
    size = len(json.dumps(clean))
    if size > MAX_METADATA_BYTES:
        raise SecurityError(f"{field_name} is {size} bytes as JSON; the limit is {MAX_METADATA_BYTES}")
    return clean


def _json_value(value: Any, where: str, depth: int) -> Any:
    if depth > MAX_METADATA_DEPTH:
        raise SecurityError(f"{where} nests deeper than {MAX_METADATA_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise SecurityError(f"{where} is {value!r}; only finite numbers are JSON")
        return value
    if isinstance(value, str):
        return validate_content(value, where)
    if isinstance(value, (list, tuple)):
        if len(value) > MAX_LIST_ITEMS:
            raise SecurityError(f"{where} has {len(value)} items; the limit is {MAX_LIST_ITEMS}")
        return [_json_value(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise SecurityError(f"{where} has a non-string key {k!r}")
            out[k] = _json_value(v, f"{where}[{k!r}]", depth + 1)
        return out
    raise SecurityError(f"{where} has type {type(value).__name__}; only JSON values are allowed")


def validate_embedding(vector: Any, field_name: str = "embedding") -> list[float] | None:
    if vector is None:
        return None
    try:
        out = [float(x) for x in vector]
    except (TypeError, ValueError):
        raise SecurityError(f"{field_name} must be a sequence of numbers") from None
    if not out or len(out) > 16_384 or not all(math.isfinite(x) for x in out):
        raise SecurityError(f"{field_name} must hold 1..16384 finite numbers")
    return out


def sanitize_memory_data(content: Any, memory_type: Any, importance: Any,
                         metadata: Any = None) -> tuple[str, str, float, dict]:
    """The four checks every memory write makes, as one call (SecurityValidator's)."""
    return (
        validate_content(content),
        validate_label(memory_type, "memory_type"),
        validate_importance(importance),
        validate_metadata(metadata),
    )
