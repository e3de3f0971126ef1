"""The ceiling of one Redis: how many tasks/s piano-dist gets through one Redis server,
how busy that server is, and at what agent count it would saturate.

    python benchmarks/redis_ceiling.py [--tasks 3000] [--processes 2 4 8] [--agents 20]
                                       [--skip-wait] [--json PATH]

Starts private redis-servers (never the machine's 6379). Not a test: prints figures.

1. W1 no-op drain (as `piano-dist bench`'s W1) with 2, 4, 8 worker processes × 32 slots:
   tasks/s, Redis commands per task, Redis CPU seconds per task (INFO cpu, user + sys)
   and Redis CPU utilisation during the drain (1.0 = one core: Redis runs commands on
   one thread, so that is its ceiling).
2. The demo's workload (fake model, 50 ms), so the cost of a *real* task — state, memory,
   locks, world, model accounting — is measured too: Redis CPU and commands per task.
3. WAIT: the W1 drain with a replica attached, without and with PIANO_REDIS_WAIT_REPLICAS=1.

The agent estimate: one Redis core serves 1 / (Redis CPU s per demo task) tasks/s; an
agent issues ``tasks_per_step`` tasks per step and a step takes about
``model_calls_in_chain × model_latency`` seconds, so
``agents ≈ capacity × step_seconds / tasks_per_step``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import redis

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from piano_dist.bench.common import (BenchRedis, WorkerPool, command_calls, command_delta,  # noqa: E402
                                     job_window, wait_count)
from piano_dist.bench.targets import PianoTarget  # noqa: E402
from piano_dist.embedded import find_redis_server, free_port  # noqa: E402

SLOTS = 32


def redis_cpu(conn: redis.Redis) -> float:
    info = conn.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def w1(url: str, processes: int, tasks: int) -> dict:
    """W1's drain (every task queued, workers idle, then released), with Redis's CPU
    time measured over the drain alone."""
    conn = redis.Redis.from_url(url)
    target = PianoTarget(url)
    try:
        with WorkerPool(url, "piano", processes, SLOTS):
            ids = target.submit("noop", tasks)
            base = target.finished()
            calls_before, cpu_before, t0 = command_calls(conn), redis_cpu(conn), time.monotonic()
            target.release()
            wait_count(lambda: target.finished() - base, tasks, timeout=max(120, tasks / 20), what="W1 drain")
            elapsed, cpu = time.monotonic() - t0, redis_cpu(conn) - cpu_before
            calls = sum(command_delta(calls_before, command_calls(conn)).values())
            first, last = job_window(conn, ids)
    finally:
        target.close()
    return {"processes": processes, "tasks_per_s": round(tasks / (last - first)),
            "commands_per_task": round(calls / tasks, 1),
            "redis_cpu_ms_per_task": round(cpu / tasks * 1000, 3),
            "redis_cpu_utilisation": round(cpu / elapsed, 2)}


def demo(url: str, agents: int, ticks: int, latency: float) -> dict:
    from piano_dist.demo import DemoConfig, DemoRun

    conn = redis.Redis.from_url(url)
    calls_before = sum(int(s["calls"]) for s in conn.info("commandstats").values())
    cpu_before = redis_cpu(conn)
    report = DemoRun(DemoConfig(agents=agents, ticks=ticks, workers=2, concurrency=SLOTS, llm_latency=latency,
                                report_path=None), redis_url=url).run()
    cpu = redis_cpu(conn) - cpu_before
    calls = sum(int(s["calls"]) for s in conn.info("commandstats").values()) - calls_before
    tasks = report["tasks"]
    return {"agents": agents, "ticks": ticks, "model_latency_s": latency, "tasks": tasks,
            "tasks_per_step": round(tasks / max(1, report["agent_steps"]), 2),
            "completed": report["tasks_by_status"].get("completed", 0),
            "commands_per_task": round(calls / tasks, 1), "redis_cpu_ms_per_task": round(cpu / tasks * 1000, 3),
            "wall_s": report["wall_seconds"],
            "tick_latency_p50_s": report.get("tick_latency_p50_seconds")}


def with_replica(url_port: int, directory: str) -> subprocess.Popen:
    port = free_port()
    proc = subprocess.Popen([find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
                             "--save", "", "--appendonly", "no", "--replicaof", "127.0.0.1", str(url_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    replica = redis.Redis(port=port)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if replica.info("replication").get("master_link_status") == "up":
                return proc
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise RuntimeError("the replica did not sync")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--processes", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--ticks", type=int, default=3)
    parser.add_argument("--slow-agents", type=int, default=10, help="agents of the 1 s-model run")
    parser.add_argument("--wait-repeat", type=int, default=3)
    parser.add_argument("--skip-wait", action="store_true")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    out: dict = {"w1": [], "machine_cores": os.cpu_count()}
    for processes in args.processes:
        with BenchRedis() as server:
            row = w1(server.url, processes, args.tasks)
        out["w1"].append(row)
        print(f"W1 {processes} processes × {SLOTS} slots: {row}", flush=True)
    with BenchRedis() as server:
        out["demo"] = demo(server.url, args.agents, args.ticks, 0.05)
    print(f"demo workload: {out['demo']}", flush=True)
    with BenchRedis() as server:
        out["demo_1s"] = demo(server.url, args.slow_agents, 2, 1.0)
    print(f"demo workload, model 1 s: {out['demo_1s']}", flush=True)
    if not args.skip_wait:
        out["wait"] = {"0": [], "1": []}
        for _ in range(args.wait_repeat):
            for replicas in ("0", "1"):
                with BenchRedis() as server:
                    replica = with_replica(server.port, server.dir)
                    os.environ["PIANO_REDIS_WAIT_REPLICAS"] = replicas
                    try:
                        out["wait"][replicas].append(w1(server.url, 2, args.tasks))
                    finally:
                        os.environ.pop("PIANO_REDIS_WAIT_REPLICAS", None)
                        replica.terminate()
                        replica.wait(timeout=10)
                print(f"W1 with a replica, PIANO_REDIS_WAIT_REPLICAS={replicas}: {out['wait'][replicas][-1]}",
                      flush=True)
    best_cpu = min(r["redis_cpu_ms_per_task"] for r in out["w1"]) / 1000
    demo_cpu = out["demo"]["redis_cpu_ms_per_task"] / 1000
    out["redis_capacity_noop_tasks_per_s"] = round(1 / best_cpu)
    out["redis_capacity_demo_tasks_per_s"] = round(1 / demo_cpu)
    step_s = out["demo_1s"]["tick_latency_p50_s"] or 0
    per_step = out["demo"]["tasks_per_step"]
    out["agents_at_saturation"] = round(out["redis_capacity_demo_tasks_per_s"] * step_s / per_step) if step_s else None
    print(f"one Redis core: ~{out['redis_capacity_noop_tasks_per_s']} no-op tasks/s, "
          f"~{out['redis_capacity_demo_tasks_per_s']} demo tasks/s; an agent step with a 1 s model takes "
          f"{step_s} s (p50) and {per_step} tasks: one Redis saturates near {out['agents_at_saturation']} agents")
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
