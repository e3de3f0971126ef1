"""The demo from an operator's side (issue 14.9): on a timeout or an interrupt it cancels
its own tasks and prints one `error:` line; without a terminal its progress is lines."""
from __future__ import annotations

import json
import signal
import subprocess

import pytest
from support.cli import piano_dist, piano_dist_path
from support.waiting import wait_until
from support.workers import worker_env

TERMINAL = {"completed", "failed", "cancelled", "timed_out", "dependency_failed"}


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error")]


def _left_waiting(redis_url: str) -> list[dict]:
    rows = json.loads(piano_dist(["tasks", "--json"], redis_url).stdout)
    assert rows, "the demo submitted no tasks"
    return [r for r in rows if r["status"] not in TERMINAL]


def test_a_timed_out_demo_cancels_its_tasks_and_prints_one_error_line(redis_url, redis_client):
    # No worker runs: nothing can finish, the run times out.
    result = piano_dist(["demo", "--external-workers", "--agents", "2", "--ticks", "2", "--timeout", "2",
                         "--progress-interval", "0.5", "--report", "", "--seed", "3", "--llm-latency", "0.2",
                         "--result-ttl", "600"],  # records kept, to see that each was cancelled
                        redis_url, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and not result.stdout.strip(), result
    errors = _error_lines(result.stderr)
    assert len(errors) == 1 and errors[0].startswith("error: demo did not finish within 2.0s"), result.stderr
    assert "unfinished tasks were cancelled" in errors[0]
    # Progress without a terminal: whole lines every interval, never a bare bar.
    progress = [line for line in result.stderr.splitlines() if line.startswith("demo: ")]
    assert len(progress) >= 2 and all("/20 tasks ended" in line for line in progress), result.stderr
    assert "\r" not in result.stderr
    # External workers: the fake model's settings are theirs, and the demo says so.
    assert "--llm-latency has no effect" in result.stderr and "--seed seeds only the world" in result.stderr
    assert _left_waiting(redis_url) == []
    assert all(redis_client.llen(f"rq:queue:piano.{q}") == 0 for q in ("critical", "high", "normal", "low",
                                                                         "background"))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_demo_cancels_its_tasks(redis_url, redis_client, signum):
    proc = subprocess.Popen([piano_dist_path(), "demo", "--external-workers", "--agents", "3", "--ticks", "2",
                             "--report", "", "--result-ttl", "600"], env=worker_env(redis_url), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: redis_client.llen("rq:queue:piano.critical") > 0 or proc.poll() is not None,
                   timeout=60, message="the demo to submit its tasks")
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and not out.strip(), (out, err)
    assert _error_lines(err) == ["error: interrupted; the demo's unfinished tasks were cancelled"], err
    assert _left_waiting(redis_url) == []
