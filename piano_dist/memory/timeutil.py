"""Memories store epoch seconds; the API speaks naive local ``datetime`` (docs/compat.md)."""
from __future__ import annotations

import time
from datetime import datetime

from ..errors import SecurityError


def to_epoch(value, field_name: str = "timestamp") -> float:
    if value is None:
        return time.time()
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise SecurityError(f"{field_name} must be a datetime or epoch seconds, not {value!r}")


def from_epoch(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(float(ts))
