"""Settings read from the environment, in one place.

Precedence for the Redis URL: an explicit argument, then ``PIANO_REDIS_URL``, then
``REDIS_URL``, then ``RQ_REDIS_URL`` (what rq's own CLI reads), then the embedded Redis
server (see :mod:`piano_dist.embedded`).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .arguments import is_whole

DEFAULT_PREFIX = "piano"
_PREFIX_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # fullmatch: "$" would let a trailing "\n" in


def configured_redis_url() -> str | None:
    """The Redis URL named by the environment, or None when the embedded one is wanted."""
    return (os.environ.get("PIANO_REDIS_URL") or os.environ.get("REDIS_URL")
            or os.environ.get("RQ_REDIS_URL") or None)


def piano_home() -> Path:
    """Project-local data directory (embedded Redis data, pid files)."""
    return Path(os.environ.get("PIANO_HOME") or ".piano").resolve()


def key_prefix() -> str:
    prefix = os.environ.get("PIANO_PREFIX") or DEFAULT_PREFIX
    return validate_prefix(prefix)


def validate_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not _PREFIX_RE.fullmatch(prefix):
        raise ValueError(
            f"invalid key prefix {prefix!r}: use 1-64 characters from letters, digits, '_', '.', '-'"
        )
    return prefix


@dataclass(frozen=True)
class Timing:
    """Intervals that govern leases and recovery, in seconds."""

    lease: float = float(os.environ.get("PIANO_LEASE_SECONDS", "10"))
    stalled_check_interval: float = float(os.environ.get("PIANO_STALLED_INTERVAL", "5"))
    max_attempts: int = int(os.environ.get("PIANO_MAX_ATTEMPTS", "3"))
    result_ttl: int = int(os.environ.get("PIANO_RESULT_TTL", "86400"))

    def __post_init__(self) -> None:
        # Nothing is kept forever: 0 means a finished task's record goes at once.
        if not is_whole(self.result_ttl) or self.result_ttl < 0:
            raise ValueError(f"result TTL (PIANO_RESULT_TTL) must be a whole number of seconds >= 0 "
                             f"(0: nothing is kept once a task ends), not {self.result_ttl!r}")
