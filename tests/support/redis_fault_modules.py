"""Modules for the Redis-fault tests: module code that talks to Redis the way piano-dist's
own modules do (through piano_dist.connection), so it rides on the shared retry policy.

Importable by worker processes as ``support.redis_fault_modules``.
"""
from __future__ import annotations

import time

from piano_dist import BaseModule, current_task
from piano_dist.connection import get_connection

_client = None


def _redis():
    global _client
    if _client is None:
        _client = get_connection()  # PIANO_REDIS_URL, with piano-dist's retry policy
    return _client


class RedisUser(BaseModule):
    def count(self, label, calls=10, pause=0.05, key="test:calls"):
        """Make ``calls`` Redis writes, ``pause`` s apart, then record the run."""
        client = _redis()
        for _ in range(calls):
            client.hincrby(key, label, 1)
            time.sleep(pause)
        ctx = current_task()
        client.rpush("test:runs", f"{label}|{ctx.attempt if ctx else 0}")
        return label

    def fill_memory_then_return(self, label):
        """Leave Redis refusing writes (maxmemory 1), so this task's own finish gets OOM."""
        client = _redis()
        client.rpush("test:runs", f"{label}|{current_task().attempt}")
        client.config_set("maxmemory", 1)
        return label
