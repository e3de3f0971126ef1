"""Start and stop real worker processes for tests."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def worker_env(redis_url: str, extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["PIANO_REDIS_URL"] = redis_url
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [TESTS_DIR, env.get("PYTHONPATH")]))
    env.setdefault("PIANO_LEASE_SECONDS", "2")
    env.setdefault("PIANO_STALLED_INTERVAL", "0.5")
    # The test modules live in tests/support; piano_dist's own are always allowed.
    env.setdefault("PIANO_ALLOWED_MODULES", "support")
    env.update(extra or {})
    return env


class WorkerProcess:
    """A real `piano-dist worker` process. With ``log_path`` its output goes to that file
    (readable while it runs); otherwise stderr is kept for a post-mortem."""

    def __init__(self, redis_url: str, concurrency: int = 4, name: str | None = None,
                 queues: list[str] | None = None, burst: bool = False, env: dict | None = None,
                 grace: float = 30.0, log_level: str = "WARNING", log_path: str | None = None,
                 cpus: set[int] | None = None, extra_args: list[str] | None = None):
        args = [sys.executable, "-m", "piano_dist.cli.main", "worker", "--concurrency", str(concurrency),
                "--grace", str(grace), "--log-level", log_level]
        if name:
            args += ["--name", name]
        for q in queues or []:
            args += ["--queues", q]
        if burst:
            args.append("--burst")
        args += extra_args or []
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb") if log_path else None
        # cpus: pin the worker (as `taskset -c`), e.g. to one CPU as in a one-CPU container.
        pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
        self.proc = subprocess.Popen(args, env=worker_env(redis_url, env),
                                     stdout=self._log or subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT if self._log else subprocess.PIPE,
                                     preexec_fn=pin)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            self.proc.send_signal(signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self) -> None:
        self.signal(signal.SIGTERM)

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._log is not None:
            self._log.close()

    def log(self) -> str:
        with open(self.log_path, "rb") as fh:
            return fh.read().decode(errors="replace")

    def stderr_text(self) -> str:
        if self.alive() or self._log is not None:
            return ""
        return self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
