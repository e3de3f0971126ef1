"""Modules the tests register; importable by worker processes (tests/ is on their PYTHONPATH)."""
from __future__ import annotations

import os
import time

import redis

from piano_dist import BaseModule, current_task


def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["PIANO_REDIS_URL"])


class Echo(BaseModule):
    def run(self, *args, **kwargs):
        return {"args": list(args), "kwargs": kwargs}

    def add(self, a, b):
        return a + b

    def nothing(self):
        return None

    def repeat(self, text, times):
        return text * times

    def _private(self):
        return "never"


class Recorder(BaseModule):
    """Appends (label, pid, start time) to a Redis list, so tests see order and placement."""

    def run(self, label="", sleep=0.0, key="test:record"):
        ctx = current_task()
        _redis().rpush(key, f"{label}|{os.getpid()}|{time.time():.6f}|{ctx.worker_name if ctx else ''}")
        if sleep:
            time.sleep(sleep)
        return label


class Sleeper(BaseModule):
    def run(self, seconds=0.5):
        time.sleep(seconds)
        return seconds

    def until_cancelled(self, limit=30.0):
        ctx = current_task()
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if ctx is not None and ctx.cancelled:
                return "stopped early"
            time.sleep(0.01)
        return "ran to the limit"


class Failer(BaseModule):
    def run(self, message="boom"):
        raise RuntimeError(message)


class Unimportable(BaseModule):
    """Registered under a class path that workers cannot import (see tests)."""

    def run(self):
        return "ran"


class Spinner(BaseModule):
    """CPU-bound: records its process id, then spins (process-isolation timeout tests)."""

    def run(self, seconds=10.0, key="test:spinner-pids"):
        _redis().rpush(key, os.getpid())
        deadline = time.monotonic() + seconds
        x = 0
        while time.monotonic() < deadline:
            x += 1
        return x


class Thinker(BaseModule):
    """Asks a (fake) model two questions at once, as planning does for two goals."""

    def run(self, latency=0.05):
        from piano_dist.core.fanout import fan_out
        from piano_dist.llm import FakeLLM

        llm = FakeLLM(median_latency=latency, sigma=0.0, connection=_redis())
        return fan_out(llm.complete, ["first question", "second question"])


class LaneProbe(BaseModule):
    """A task that works (holds a CPU lane) for ``work`` seconds, then waits ``wait``
    seconds, counting in Redis how many tasks are in each phase at once (and the most seen)."""

    def run(self, work=0.1, wait=0.6, key="test:lanes"):
        from piano_dist import waiting

        r = _redis()

        def enter(phase):
            now = r.hincrby(key, phase, 1)
            r.eval("if tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') < tonumber(ARGV[2]) then "
                   "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end", 1, key, f"max_{phase}", now)

        enter("working")
        time.sleep(work)  # stands for Python work: not marked as a wait
        r.hincrby(key, "working", -1)
        with waiting():
            enter("waiting")
            time.sleep(wait)
            r.hincrby(key, "waiting", -1)
        return "done"
