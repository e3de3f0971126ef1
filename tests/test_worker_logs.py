"""Worker logs (issue 14.8): real worker processes, their log files read back.

At INFO a line per finished task (id, module.method, outcome, duration); a failed task's
exception type and message at WARNING, its traceback at DEBUG; JSON lines on request.
"""
from __future__ import annotations

import json
import re

import pytest
from support.failure_procs import Workers
from support.foundation import wait_for_workers
from support.sample_modules import Echo, Failer, Sleeper
from support.waiting import wait_until

from piano_dist import ConcurrentModuleManager


@pytest.fixture
def manager(redis_url):
    m = ConcurrentModuleManager(max_workers=0, redis_url=redis_url)
    m.register_module("echo", Echo())
    m.register_module("failer", Failer())
    m.register_module("sleeper", Sleeper())
    yield m
    m.shutdown()


def _run_three(manager):
    ok = manager.submit_task("echo", "add", args=(1, 2))
    bad = manager.submit_task("failer", "run", kwargs={"message": "deliberate failure 42"})
    slow = manager.submit_task("sleeper", "run", kwargs={"seconds": 3}, timeout=0.3)
    final = manager.wait([ok, bad, slow], timeout=30)
    assert [final[t]["status"] for t in (ok, bad, slow)] == ["completed", "failed", "timed_out"]
    return ok, bad, slow


def _lines_with(log: str, task_id: str) -> list[str]:
    return [line for line in log.splitlines() if task_id in line]


def test_info_has_one_line_per_finished_task(manager, redis_url, redis_client):
    with Workers(redis_url) as workers:
        w = workers.start(concurrency=2, log_level="INFO")
        wait_for_workers(redis_client, [w.name], procs=[w])
        ok, bad, slow = _run_three(manager)
        wait_until(lambda: all(_lines_with(w.log(), t) for t in (ok, bad, slow)), timeout=15,
                   message="the three task lines")
        log = w.log()
    [done] = _lines_with(log, ok)
    assert re.search(rf"task {ok} echo\.add completed in \d+\.\d{{3}}s", done), done
    [failed] = _lines_with(log, bad)
    assert re.search(rf"task {bad} failer\.run failed in \d+\.\d{{3}}s: RuntimeError: deliberate failure 42",
                     failed), failed
    [timed_out] = _lines_with(log, slow)
    assert re.search(rf"task {slow} sleeper\.run timed out after \d+\.\d{{3}}s", timed_out), timed_out
    assert "Traceback" not in log


def test_failures_are_warnings_and_tracebacks_debug(manager, redis_url, redis_client):
    with Workers(redis_url) as workers:
        quiet = workers.start(concurrency=2, log_level="WARNING")
        wait_for_workers(redis_client, [quiet.name], procs=[quiet])
        ok, bad, slow = _run_three(manager)
        wait_until(lambda: _lines_with(quiet.log(), bad) and _lines_with(quiet.log(), slow), timeout=15,
                   message="the failure lines")
        assert not _lines_with(quiet.log(), ok), "a completed task logged above INFO"
        assert "Traceback" not in quiet.log()


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_debug_adds_the_traceback(manager, redis_url, redis_client, isolation):
    with Workers(redis_url) as workers:
        w = workers.start(concurrency=2, log_level="DEBUG", env={"PIANO_ISOLATION": isolation})
        wait_for_workers(redis_client, [w.name], procs=[w])
        bad = manager.submit_task("failer", "run", kwargs={"message": "deliberate failure 43"})
        assert manager.wait([bad], timeout=30)[bad]["status"] == "failed"
        wait_until(lambda: "failed in" in w.log(), timeout=15, message="the failure line")
        log = w.log()
    assert "Traceback (most recent call last)" in log, log[-3000:]
    trace = log[log.index("Traceback (most recent call last)"):]
    assert "sample_modules.py" in trace and 'raise RuntimeError(message)' in trace, trace[:2000]
    assert "RuntimeError: deliberate failure 43" in trace
    assert bad in log[:log.index("Traceback (most recent call last)")].splitlines()[-1]


def test_json_log_lines(manager, redis_url, redis_client):
    with Workers(redis_url) as workers:
        w = workers.start(concurrency=2, log_level="DEBUG", env={"PIANO_LOG_FORMAT": "json"})
        wait_for_workers(redis_client, [w.name], procs=[w])
        ok, bad, slow = _run_three(manager)
        wait_until(lambda: all(_lines_with(w.log(), t) for t in (ok, bad, slow)), timeout=15,
                   message="the task lines")
        records = [json.loads(line) for line in w.log().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any(r["logger"].startswith("rq.") for r in records), "RQ's own lines are JSON too"
    outcome = {r["task_id"]: r for r in records if r.get("outcome")}
    assert outcome[ok]["level"] == "INFO" and outcome[ok]["call"] == "echo.add"
    assert outcome[ok]["outcome"] == "completed" and outcome[ok]["duration_seconds"] >= 0
    assert outcome[bad]["level"] == "WARNING" and outcome[bad]["outcome"] == "failed"
    assert outcome[bad]["exception_type"] == "RuntimeError"
    assert outcome[bad]["exception_message"] == "deliberate failure 42"
    assert outcome[slow]["level"] == "WARNING" and outcome[slow]["outcome"] == "timed_out"
    traced = [r for r in records if r.get("task_id") == bad and "traceback" in r]
    assert traced and traced[0]["level"] == "DEBUG" and "deliberate failure 42" in traced[0]["traceback"]


@pytest.mark.parametrize("same", [True, False])
def test_rq_worker_on_another_redis_than_the_configured_one_says_so(redis_url, same):
    import os
    import subprocess
    import sys

    from support.workers import worker_env

    from piano_dist.embedded import free_port

    configured = redis_url if same else f"redis://127.0.0.1:{free_port()}/0"
    rq = os.path.join(os.path.dirname(sys.executable), "rq")
    result = subprocess.run([rq, "worker", "-w", "piano_dist.workers.PianoWorker", "--url", redis_url, "--burst",
                             "piano.normal"], env=worker_env(configured), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    warned = "not the configured" in result.stdout + result.stderr
    assert warned is not same, result.stdout + result.stderr
    if not same:
        assert '--url "$(piano-dist redis url)"' in result.stdout + result.stderr
