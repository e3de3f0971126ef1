"""Modules for the trust-boundary and fault-path tests (importable by worker processes
as ``support.trust_modules``). Every call is recorded in Redis, so a test sees what ran."""
from __future__ import annotations

import os

import redis

from piano_dist import BaseModule


def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["PIANO_REDIS_URL"])


class Guarded(BaseModule):
    """A public method, and a private one that must never run as a task."""

    def run(self, label="ran"):
        _redis().rpush("test:guarded", label)
        return label

    def _private(self):
        _redis().rpush("test:guarded", "PRIVATE METHOD CALLED")
        return "never"


class Aborting(BaseModule):
    """Methods that raise what is not an Exception."""

    def exit(self):
        raise SystemExit(3)

    def interrupt(self):
        raise KeyboardInterrupt()

    def base(self):
        raise GeneratorExit("not an Exception either")


class AbortingConstructor(BaseModule):
    def __init__(self, agent_state=None, **config):
        raise SystemExit("refusing to be built")

    def run(self):
        return "unreachable"


class Results(BaseModule):
    """Results that are not JSON values, or too big."""

    def nan(self):
        return {"score": float("nan")}

    def int_keys(self):
        return {1: "one"}

    def huge(self, size=2_000_000):
        return "x" * size

    def fine(self):
        return {"ok": [1, 2.5, None, "text"]}

    def echo(self, value):
        return value


class RaisesThenKills(BaseModule):
    """Raises on its first ``failures`` attempts, kills its worker process on the next one,
    and returns after that: ordinary retries followed by one lost run."""

    def run(self, failures=3):
        import signal

        from piano_dist import current_task

        attempt = current_task().attempt
        _redis().rpush("test:raises-then-kills", attempt)
        if attempt <= failures:
            raise RuntimeError(f"ordinary failure on attempt {attempt}")
        if attempt == failures + 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return attempt
