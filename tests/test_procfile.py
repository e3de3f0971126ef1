"""The Procfiles under honcho (issue 14.11): `honcho start -c worker=N` starts workers
only; the dashboard is its own process type in Procfile.dashboard, started when asked."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from support.waiting import wait_until
from support.workers import worker_env

from piano_dist.embedded import free_port

REPO = Path(__file__).resolve().parents[1]


def _honcho(args: list[str], redis_url: str, cwd: Path, log: Path, extra: dict | None = None):
    env = worker_env(redis_url, extra)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    return subprocess.Popen([sys.executable, "-m", "honcho", *args], cwd=cwd, env=env,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # honcho stops its processes
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _workers(redis_client) -> list[str]:
    return [k.decode().split(":", 2)[2] for k in redis_client.smembers("rq:workers")]


def test_honcho_starts_workers_only_and_the_dashboard_when_asked(redis_url, redis_client, tmp_path):
    for name in ("Procfile", "Procfile.dashboard"):
        shutil.copy(REPO / name, tmp_path / name)
    # A taken dashboard port must not matter to `honcho start -c worker=…`.
    busy = __import__("socket").socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    taken = busy.getsockname()[1]
    workers = _honcho(["start", "-c", "worker=2"], redis_url, tmp_path, tmp_path / "workers.log",
                      {"PIANO_DASHBOARD_PORT": str(taken)})
    dashboard = None
    try:
        wait_until(lambda: len(_workers(redis_client)) == 2 or workers.poll() is not None, timeout=60,
                   message="two workers from the Procfile")
        assert workers.poll() is None, (tmp_path / "workers.log").read_text()
        log = (tmp_path / "workers.log").read_text()
        assert "worker.1" in log and "worker.2" in log and "dashboard" not in log, log

        port = free_port()
        dashboard = _honcho(["start", "-f", "Procfile.dashboard"], redis_url, tmp_path, tmp_path / "dash.log",
                            {"PIANO_DASHBOARD_PORT": str(port)})

        def answers():
            assert dashboard.poll() is None, (tmp_path / "dash.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/0/data/queues.json", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_until(answers, timeout=60, interval=0.2, message="the dashboard from Procfile.dashboard")
        # Stopping the dashboard leaves the workers running.
        _stop(dashboard)
        assert workers.poll() is None and len(_workers(redis_client)) == 2
    finally:
        if dashboard is not None:
            _stop(dashboard)
        _stop(workers)
        busy.close()
