"""Worker processes and Redis snapshots for the graph/failure tests."""
from __future__ import annotations

import os
import tempfile
import uuid

import redis

from .foundation import redis_snapshot
from .workers import WorkerProcess


class LoggedWorker(WorkerProcess):
    """A worker named and logged at INFO to a temporary file the test can read while it runs."""

    def __init__(self, redis_url: str, concurrency: int = 2, name: str | None = None,
                 grace: float = 30.0, log_level: str = "INFO", env: dict | None = None):
        name = name or f"w-{uuid.uuid4().hex[:8]}"
        fd, log_path = tempfile.mkstemp(prefix=f"piano-{name}-", suffix=".log")
        os.close(fd)
        super().__init__(redis_url, concurrency=concurrency, name=name, grace=grace, env=env,
                         log_level=log_level, log_path=log_path)

    def stop(self) -> None:
        super().stop()
        try:
            os.unlink(self.log_path)
        except OSError:
            pass


class Workers:
    """Every worker a test starts, stopped at the end whatever happens."""

    def __init__(self, redis_url: str):
        self.redis_url = redis_url
        self.started: list[LoggedWorker] = []

    def start(self, **kw) -> LoggedWorker:
        w = LoggedWorker(self.redis_url, **kw)
        self.started.append(w)
        return w

    def stop_all(self) -> None:
        for w in self.started:
            try:
                w.stop()
            except Exception:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop_all()


def snapshot(client: redis.Redis) -> dict:
    """Every key with its type, value and whether it expires: a picture of the whole store."""
    return redis_snapshot(client)
