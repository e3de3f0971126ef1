"""Reading Redis replies: bytes in, text out.

Everything read back from Redis is untrusted input; a caller that must never fail on a
stray byte passes ``errors="replace"``.
"""
from __future__ import annotations

from typing import Any


def as_text(value: Any, errors: str = "strict") -> Any:
    """A reply value as text: bytes decoded as UTF-8, None left None, a str as it is,
    anything else (an integer reply) through ``str``."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors)
    if value is None or isinstance(value, str):
        return value
    return str(value)
