"""The multi-agent demo: on the embedded Redis from the CLI, and surviving a killed worker."""
import json
import os
import signal
import subprocess
import sys

import pytest

from piano_dist.demo import DemoConfig, DemoRun


def _cli(args, env, cwd, timeout=300):
    return subprocess.run([sys.executable, "-m", "piano_dist.cli.main", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def test_demo_on_the_embedded_redis_completes_every_task(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PIANO_REDIS_URL", "REDIS_URL")}
    env["PIANO_HOME"] = str(tmp_path / ".piano")
    report_path = tmp_path / "report.json"
    try:
        result = _cli(["demo", "--agents", "10", "--ticks", "3", "--workers", "2", "--concurrency", "8",
                       "--report", str(report_path)], env, tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "started embedded Redis" in result.stderr
        report = json.loads(report_path.read_text())
        assert report["tasks"] == 10 * 3 * 5
        assert report["tasks_by_status"] == {"completed": 150}
        assert report["agent_steps"] == 30
        assert report.get("steps_moved", 0) + report.get("steps_blocked", 0) == 30
        assert report["model_calls"] > 0 and report["state_changes"] > 0 and report["memory_events"] > 0
        # The honest figures: an oracle from the model's own latencies, never above the wall.
        assert 0 < report["oracle_seconds"] <= report["wall_seconds"]
        assert report["oracle_seconds"] == max(report["oracle_chain_seconds"], report["oracle_work_seconds"])
        assert report["cpu_ms_per_task"] > 0 and report["redis_commands_per_agent_step"] > 0
        assert report["redis_bytes_per_task"] > 0
        for label in ("agent-steps/s", "tick latency p50 / p95", "model oracle", "tasks by status",
                      "CPU per task (workers)", "Redis per agent-step", "Redis per task", "world steps",
                      "state changes / conflicts", "model calls (peak in flight)"):
            assert label in result.stdout
    finally:
        _cli(["redis", "stop"], env, tmp_path, timeout=60)


@pytest.mark.slow
def test_demo_completes_every_tick_when_a_worker_is_killed(redis_url):
    config = DemoConfig(agents=8, ticks=4, workers=2, concurrency=8, seed=3, report_path=None, timeout=240,
                        worker_env={"PIANO_LEASE_SECONDS": "2", "PIANO_STALLED_INTERVAL": "0.5"})
    run = DemoRun(config, redis_url=redis_url)
    killed = []

    def kill_one_worker_midway(done, total):
        if not killed and done >= total // 4:
            victim = run.worker_procs[0]
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
            killed.append(victim.pid)

    report = run.run(on_progress=kill_one_worker_midway)
    assert killed, "the worker was never killed: the run ended before a quarter of its tasks"
    assert report["tasks_by_status"] == {"completed": 8 * 4 * 5}
    assert report["agent_steps"] == 8 * 4


@pytest.mark.parametrize("result_ttl", [0, 120])
def test_demo_runs_on_external_workers(redis_url, redis_client, result_ttl):
    from support.workers import WorkerProcess

    worker = WorkerProcess(redis_url, concurrency=8)
    try:
        config = DemoConfig(agents=4, ticks=2, external_workers=True, report_path=None, timeout=120,
                            result_ttl=result_ttl)
        run = DemoRun(config, redis_url=redis_url)
        report = run.run()
        assert report["tasks_by_status"] == {"completed": 4 * 2 * 5}
        assert report["slots"] == 8
        # The report comes from the tasks' events whether or not their records stay:
        # every task's times, and the model time of those that called the model.
        assert report["tasks_without_event"] == 0 and report["agent_steps"] == 4 * 2
        assert report["model_calls"] > 0 and 0 < report["oracle_seconds"] <= report["wall_seconds"]
        assert all(s["started_at"] <= s["ended_at"] for s in run.statuses.values())
        assert report["config"]["result_ttl"] == result_ttl
        ttls = [redis_client.ttl(f"rq:job:{t}") for t in run.task_ids]
        if result_ttl:
            assert all(60 < t <= result_ttl for t in ttls), sorted(ttls)[:3]
        else:  # nothing left behind by default: a 1,000-agent run would keep ~25,000 records
            assert set(ttls) == {-2}
    finally:
        worker.stop()


def test_the_demo_keeps_records_for_a_ttl_from_0(tmp_path):
    assert DemoConfig().result_ttl == 0
    DemoConfig(timeout=float("inf"), result_ttl=0).validate()
    for ttl in (-1, 2**31, 100.5, "60"):
        with pytest.raises(ValueError, match="result ttl must be whole seconds from 0"):
            DemoConfig(result_ttl=ttl).validate()
    env = {k: v for k, v in os.environ.items() if k not in ("PIANO_REDIS_URL", "REDIS_URL")}
    env["PIANO_HOME"] = str(tmp_path / ".piano")
    result = _cli(["demo", "--result-ttl", "-1"], env, tmp_path, timeout=60)
    assert result.returncode == 2
    assert "--result-ttl" in result.stderr and "-1" in result.stderr
    assert not (tmp_path / ".piano").exists()  # refused before any Redis was started


def test_a_run_whose_events_were_missed_reads_the_kept_records_and_counts_them(redis_url):
    """Pub/sub drops what a subscriber misses: the report then takes those tasks' times
    from their records (kept here) and says how many; their statuses come from the
    group's counters either way."""
    from support.workers import WorkerProcess

    worker = WorkerProcess(redis_url, concurrency=4)
    try:
        config = DemoConfig(agents=2, ticks=1, external_workers=True, report_path=None, timeout=120,
                            result_ttl=600)
        run = DemoRun(config, redis_url=redis_url)
        run.journal.start = lambda *args, **kwargs: None  # never subscribes: every event is missed
        report = run.run()
        assert report["tasks_by_status"] == {"completed": 2 * 5}
        assert report["tasks_without_event"] == 2 * 5
        assert report["agent_steps"] == 2 and report["model_calls"] > 0
        assert all(s and s["started_at"] <= s["ended_at"] for s in run.statuses.values())
    finally:
        worker.stop()
