"""The benchmark's task bodies, for piano-dist (a module) and for plain RQ (functions)."""
from __future__ import annotations

import os
import time

import redis

from piano_dist.modules.base import BaseModule

COUNTER = "bench:counter"


class BenchModule(BaseModule):
    """noop: INCR a counter; sleep: sleep; stamp: return (start, end) wall-clock times."""

    _conn: redis.Redis | None = None

    def _redis(self) -> redis.Redis:
        if self._conn is None:
            self._conn = redis.Redis.from_url(os.environ["PIANO_REDIS_URL"])
        return self._conn

    def noop(self) -> None:
        self._redis().incr(COUNTER)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def stamp(self) -> list:
        t0 = time.time()
        return [t0, time.time()]


def rq_noop() -> None:
    from rq import get_current_job

    get_current_job().connection.incr(COUNTER)


def rq_sleep(seconds: float) -> None:
    time.sleep(seconds)


def rq_stamp() -> list:
    t0 = time.time()
    return [t0, time.time()]
