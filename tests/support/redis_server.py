"""A private redis-server for tests: free port, own data dir, killable and restartable.

Never touches the machine's Redis on 6379.
"""
from __future__ import annotations

import signal
import shutil
import subprocess
import tempfile
import time
from urllib.parse import quote

import redis

from piano_dist.embedded import find_redis_server, free_port


class RedisServer:
    """``password`` sets requirepass (the default user's password); ``args`` adds
    redis-server options (ACL users, TLS); ``binary`` picks another redis-server."""

    def __init__(self, appendonly: bool = False, data_dir: str | None = None, password: str | None = None,
                 args: list[str] | None = None, binary: str | None = None, bind: str = "127.0.0.1"):
        self.binary = binary or find_redis_server()
        self.port = free_port()
        self.appendonly = appendonly
        self.password = password
        self.extra_args = list(args or [])
        self.bind = bind
        self._own_dir = data_dir is None  # made here: removed by close()
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="piano-test-redis-")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{self.bind}:{self.port}/0"

    def start(self, timeout: float = 10.0) -> "RedisServer":
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", self.bind,
            "--dir", self.data_dir,
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always" if self.appendonly else "everysec",
            "--daemonize", "no",
            "--loglevel", "warning",
            *(["--requirepass", self.password] if self.password else []),
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ping():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not answer within {timeout}s")

    def ping(self) -> bool:
        try:
            client = redis.Redis(host=self.bind, port=self.port, password=self.password,
                                 socket_connect_timeout=0.2, socket_timeout=0.5)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except redis.RedisError:
            return False

    def client(self, **kw) -> redis.Redis:
        return redis.Redis.from_url(self.url, **kw)

    def kill(self) -> None:
        """SIGKILL: no chance to persist anything beyond what AOF already has."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def close(self) -> None:
        """Stop for good: the server, then the data directory this object made."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def restart(self) -> "RedisServer":
        self.kill()
        return self.start()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
