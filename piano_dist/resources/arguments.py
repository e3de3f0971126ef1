"""Argument checks of the ResourceCoordinator API (each raises ValueError naming the argument)."""
from __future__ import annotations

import re

from ..arguments import is_number

_FORBIDDEN_ID_RE = re.compile(r"[{}\r\n\t ]")  # braces would break the {resource_id} hash tag


def require_seconds(name: str, value, allow_zero: bool = False) -> None:
    ok = is_number(value) and value == value
    if not ok or value < 0 or (value == 0 and not allow_zero) or value == float("inf"):
        need = "a number >= 0" if allow_zero else "a number > 0"
        raise ValueError(f"{name} must be {need} (seconds), got {value!r}")


def require_id(name: str, value, check_chars: bool = True) -> None:
    if not isinstance(value, str) or not value or len(value) > 200:
        raise ValueError(f"{name} must be a non-empty string of at most 200 characters, got {value!r}")
    if check_chars and _FORBIDDEN_ID_RE.search(value):
        raise ValueError(f"{name} {value!r} may not contain braces or whitespace")
