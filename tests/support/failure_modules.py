"""Modules for the task-graph and failure-semantics tests.

Importable by worker processes as ``support.failure_modules`` (tests/ is on their
PYTHONPATH). Every record goes to Redis, so the test sees what ran where.
"""
from __future__ import annotations

import os
import signal
import time

import redis

from piano_dist import BaseModule, current_task

_clients: dict[str, redis.Redis] = {}


def _redis() -> redis.Redis:
    url = os.environ["PIANO_REDIS_URL"]
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = redis.Redis.from_url(url)
    return client


def parse_run(entry: bytes | str) -> dict:
    """One RunLog record as a dict: label, pid, worker, attempt, start."""
    text = entry.decode() if isinstance(entry, bytes) else entry
    label, pid, worker, attempt, start = text.split("|")
    return {"label": label, "pid": int(pid), "worker": worker, "attempt": int(attempt),
            "start": float(start)}


class RunLog(BaseModule):
    """Records each run's start (label, pid, worker, attempt, time) in a Redis list."""

    def run(self, label, sleep=0.0, key="test:runs"):
        ctx = current_task()
        _redis().rpush(key, f"{label}|{os.getpid()}|{ctx.worker_name if ctx else ''}|"
                            f"{ctx.attempt if ctx else 0}|{time.time():.6f}")
        if sleep:
            time.sleep(sleep)
        return label

    def slow_then_mark(self, label, seconds, key="test:returned"):
        """Sleep (ignoring cancellation), then record that the thread returned."""
        time.sleep(seconds)
        _redis().rpush(key, label)
        return label


class DagNode(BaseModule):
    def ok(self, label):
        return label

    def fail(self, label):
        raise RuntimeError(f"deliberate failure of {label}")

    def nap(self, label, seconds=0.1):
        """No Redis access of its own: for tests that take Redis away."""
        time.sleep(seconds)
        return label


class Flaky(BaseModule):
    """Fails the first ``failures`` runs (counted in Redis under ``key``), then succeeds."""

    def run(self, key, failures=1):
        n = _redis().incr(key)
        if n <= failures:
            raise RuntimeError(f"flaky failure on run {n}")
        return n


class WorkerKiller(BaseModule):
    """Kills the worker process running it, every time."""

    def run(self, key="test:killer_runs"):
        _redis().rpush(key, os.getpid())
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(10)
        return "unreachable"
