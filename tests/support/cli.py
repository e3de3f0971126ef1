"""Run the real `piano-dist` command (the installed console script) in a subprocess."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

from .workers import worker_env


def piano_dist_path() -> str:
    """The console script installed next to this interpreter (else the one on PATH)."""
    beside = os.path.join(os.path.dirname(sys.executable), "piano-dist")
    found = beside if os.path.exists(beside) else shutil.which("piano-dist")
    if not found:
        raise AssertionError("the piano-dist command is not installed: pip install -e '.[test]'")
    return found


def piano_dist(args: list[str], redis_url: str | None = None, env: dict | None = None, cwd: str | None = None,
               timeout: float = 60, input: str | None = None) -> subprocess.CompletedProcess:
    """`piano-dist ARGS` with PIANO_REDIS_URL=redis_url (None: the variable is removed);
    ``env`` values of None remove those variables."""
    full = worker_env(redis_url) if redis_url else dict(os.environ)
    if not redis_url:
        full.pop("PIANO_REDIS_URL", None)
    full.update(env or {})
    full = {k: v for k, v in full.items() if v is not None}
    return subprocess.run([piano_dist_path(), *args], env=full, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, input=input)


def one_error_line(result: subprocess.CompletedProcess, status: int = 2) -> str:
    """The CLI's error contract: one non-empty line in all (stdout and stderr together),
    on stderr, starting with `error:`, and the exit status."""
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert not result.stdout.strip(), f"stdout: {result.stdout!r}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), f"stderr: {result.stderr!r}"
    return lines[0]
