"""Shared machinery: a private redis-server, worker pools, timestamps, percentiles."""
from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from typing import Iterable

import redis

from piano_dist.embedded import find_redis_server, free_port

RQ_QUEUE = "bench"


class BenchRedis:
    """One private redis-server on a free port (never the machine's 6379), no persistence."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="piano-bench-redis-")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> "BenchRedis":
        self.proc = subprocess.Popen(
            [find_redis_server(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis(port=self.port, socket_connect_timeout=0.2).ping():
                    return self
            except redis.RedisError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


# --- Redis figures ------------------------------------------------------------------
def command_calls(conn: redis.Redis) -> dict[str, int]:
    """Calls per command so far (INFO commandstats; commands run by Lua scripts included)."""
    return {name: int(stat["calls"]) for name, stat in conn.info("commandstats").items()}


def command_delta(before: dict[str, int], after: dict[str, int], ignore: Iterable[str] = ("cmdstat_info",)) -> dict:
    out = {}
    for name, calls in after.items():
        if name in ignore:
            continue
        d = calls - before.get(name, 0)
        if d:
            out[name.replace("cmdstat_", "")] = d
    return out


def used_memory(conn: redis.Redis) -> int:
    return int(conn.info("memory")["used_memory"])


# --- time --------------------------------------------------------------------------
def rq_time(raw: bytes | str | None) -> float | None:
    """Epoch seconds from RQ's utcformat ("%Y-%m-%dT%H:%M:%S.%fZ")."""
    if not raw:
        return None
    text = raw.decode() if isinstance(raw, bytes) else raw
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    return None


def job_window(conn: redis.Redis, ids: list[str]) -> tuple[float, float]:
    """(first started_at, last ended_at) over the jobs: the drain, worker start-up excluded."""
    with conn.pipeline(transaction=False) as pipe:
        for jid in ids:
            pipe.hmget(f"rq:job:{jid}", "started_at", "ended_at")
        rows = pipe.execute()
    starts = [rq_time(r[0]) for r in rows]
    ends = [rq_time(r[1]) for r in rows]
    if None in starts or None in ends:
        missing = sum(1 for s, e in zip(starts, ends) if s is None or e is None)
        raise RuntimeError(f"{missing} job(s) lack started_at/ended_at")
    return min(starts), max(ends)


def wait_count(read, target: int, timeout: float, what: str, interval: float = 0.02) -> int:
    """Poll ``read()`` until it reaches ``target``; returns how many polls it took."""
    deadline = time.monotonic() + timeout
    polls = 0
    while True:
        polls += 1
        value = read()
        if value >= target:
            return polls
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: {value}/{target} after {timeout:.0f}s")
        time.sleep(interval)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --- worker pools --------------------------------------------------------------------
class WorkerPool:
    """N worker processes of one kind: "piano" (PianoWorker, ``slots`` each), "simple"
    (RQ SimpleWorker) or "fork" (RQ's forking Worker), on the benchmark's Redis."""

    def __init__(self, url: str, kind: str, processes: int = 2, slots: int = 32):
        self.url, self.kind, self.processes, self.slots = url, kind, processes, slots
        self.procs: list[subprocess.Popen] = []

    def command(self) -> list[str]:
        if self.kind == "piano":
            return [sys.executable, "-m", "piano_dist.cli.main", "--redis-url", self.url, "worker",
                    "--concurrency", str(self.slots), "--log-level", "WARNING", "--grace", "5",
                    "-q", "critical", "-q", "high", "-q", "normal"]
        return [sys.executable, "-m", "piano_dist.bench.rq_worker", self.url, self.kind, RQ_QUEUE]

    def __enter__(self) -> "WorkerPool":
        conn = redis.Redis.from_url(self.url)
        before = conn.scard("rq:workers")
        env = dict(os.environ, PIANO_REDIS_URL=self.url, BENCH_REDIS_URL=self.url)
        for _ in range(self.processes):
            self.procs.append(subprocess.Popen(self.command(), env=env, stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 30
        while conn.scard("rq:workers") < before + self.processes:
            if any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"a {self.kind} worker exited at start-up")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind} workers did not register within 30s")
            time.sleep(0.02)
        time.sleep(0.3)  # registered: let them reach their blocking wait
        return self

    def rss_mb(self) -> list[float]:
        out = []
        for p in self.procs:
            try:
                with open(f"/proc/{p.pid}/status") as fh:
                    for line in fh:
                        if line.startswith("VmRSS:"):
                            out.append(int(line.split()[1]) / 1024)
            except OSError:
                pass
        return out

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
