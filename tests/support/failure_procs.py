"""Worker processes and Redis snapshots for the graph/failure tests."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import uuid

import redis

from .workers import worker_env


class LoggedWorker:
    """A `piano-dist worker` process whose log goes to a file the test can read while it runs."""

    def __init__(self, redis_url: str, concurrency: int = 2, name: str | None = None,
                 grace: float = 30.0, log_level: str = "INFO", env: dict | None = None):
        self.name = name or f"w-{uuid.uuid4().hex[:8]}"
        fd, self.log_path = tempfile.mkstemp(prefix=f"piano-{self.name}-", suffix=".log")
        self._log = os.fdopen(fd, "wb")
        args = [sys.executable, "-m", "piano_dist.cli.main", "worker", "--concurrency", str(concurrency),
                "--grace", str(grace), "--log-level", log_level, "--name", self.name]
        self.proc = subprocess.Popen(args, env=worker_env(redis_url, env), stdout=self._log,
                                     stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        with open(self.log_path, "rb") as fh:
            return fh.read().decode(errors="replace")

    def signal(self, signum: int) -> None:
        if self.alive():
            self.proc.send_signal(signum)

    def kill(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        if self.alive():
            self.kill()
        self._log.close()
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
    out = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        if kind == "string":
            value = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "set":
            value = sorted(client.smembers(key))
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = client.xrange(key)
        else:
            value = kind
        out[key] = (kind, value, client.ttl(key) > 0)
    return out
