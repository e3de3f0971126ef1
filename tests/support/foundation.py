"""Helpers for the foundation integration tests: Redis dumps, scripts in subprocesses,
Recorder records, worker readiness."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import redis

from .waiting import wait_until
from .workers import TESTS_DIR, worker_env


def redis_snapshot(client: redis.Redis) -> dict:
    """Every key of the server with its type, serialized value (DUMP) and whether it expires."""
    snap = {}
    for key in client.scan_iter(count=1000):
        snap[key] = (client.type(key), client.dump(key), client.pttl(key) >= 0)
    return snap


def run_python(code: str, redis_url: str | None = None, env: dict | None = None, cwd: str | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a Python script in its own process (tests/ on its PYTHONPATH)."""
    full_env = worker_env(redis_url) if redis_url else dict(os.environ)
    if not redis_url:
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [TESTS_DIR, full_env.get("PYTHONPATH")]))
    full_env.update(env or {})
    for name, value in list(full_env.items()):
        if value is None:
            del full_env[name]
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def run_cli(args: list[str], redis_url: str | None, env: dict | None = None, cwd: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
    full_env = worker_env(redis_url) if redis_url else dict(os.environ)
    full_env.update(env or {})
    for name, value in list(full_env.items()):
        if value is None:
            del full_env[name]
    return subprocess.run([sys.executable, "-m", "piano_dist.cli.main", *args], env=full_env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def records(client: redis.Redis, key: str = "test:record") -> list[dict]:
    """The Recorder module's start records, in start order."""
    out = []
    for raw in client.lrange(key, 0, -1):
        label, pid, started, worker = raw.decode().split("|", 3)
        out.append({"label": label, "pid": int(pid), "started": float(started), "worker": worker})
    return out


def wait_for_workers(client: redis.Redis, names: list[str], timeout: float = 30.0, procs: list = ()) -> None:
    """Until each named worker process has registered and published its slots.

    ``procs`` (WorkerProcess objects) are checked too: one that exits fails at once, with its stderr."""
    def ready():
        for proc in procs:
            if not proc.alive():
                raise AssertionError(f"worker process {proc.pid} exited {proc.proc.returncode}:\n"
                                     f"{proc.stderr_text()}")
        return all(client.exists(f"piano:worker:{n}:metrics") and client.exists(f"rq:worker:{n}")
                   for n in names)
    wait_until(ready, timeout=timeout, message=f"workers {names} to start")
