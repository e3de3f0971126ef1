"""Run the workloads on one private Redis, print one table, write JSON."""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Callable

import redis

from . import w1_noop, w2_io, w3_chain, w4_submit, w5_locks, w6_state
from .common import BenchRedis, WorkerPool
from .targets import PianoTarget, RQTarget

SIZES = {
    "full": dict(w1=3000, w2=1000, w3=200, w4=5000, w5_pairs=2000, w5_rounds=100, w5_one=200,
                 w6_ops=500, w6_notify=200, procs=8),
    "quick": dict(w1=600, w2=200, w3=50, w4=1000, w5_pairs=300, w5_rounds=30, w5_one=50,
                  w6_ops=100, w6_notify=50, procs=8),
    "tiny": dict(w1=20, w2=20, w3=20, w4=20, w5_pairs=20, w5_rounds=5, w5_one=5, w6_ops=10, w6_notify=10,
                 procs=2),
}
PROCESSES = 2
PIANO_SLOTS = 32
SYSTEMS = ("piano", "simple", "fork")
WORKLOADS = ("w1", "w2", "w3", "w4", "w5", "w6", "w7")


def _best(runs: list[dict], key: str, higher: bool) -> dict:
    return (max if higher else min)(runs, key=lambda r: r[key])


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def demo_available() -> bool:
    try:
        import importlib.util

        return importlib.util.find_spec("piano_dist.demo") is not None
    except ImportError:
        return False


def run_all(mode: str = "full", repeat: int = 1, only: tuple = WORKLOADS, log: Callable = _log) -> dict:
    size = SIZES[mode]
    results: dict = {"mode": mode, "repeat": repeat, "sizes": size, "machine": machine(),
                     "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    with BenchRedis() as server:
        url = server.url
        conn = redis.Redis.from_url(url)
        for system in SYSTEMS:
            if not {"w1", "w2", "w3", "w4"} & set(only):
                break
            target = PianoTarget(url) if system == "piano" else RQTarget(url, system)
            slots = PROCESSES * (PIANO_SLOTS if system == "piano" else 1)
            if {"w1", "w2", "w3"} & set(only):
                with WorkerPool(url, system, PROCESSES, PIANO_SLOTS) as pool:
                    if "w1" in only:
                        log(f"W1 no-op, {target.name}")
                        results.setdefault("w1", {})[system] = _best(
                            [w1_noop.run(target, size["w1"]) for _ in range(repeat)], "tasks_per_s", True)
                    if "w2" in only:
                        log(f"W2 I/O-bound, {target.name}")
                        results.setdefault("w2", {})[system] = _best(
                            [w2_io.run(target, size["w2"], slots) for _ in range(repeat)], "wall_s", False)
                    if "w3" in only:
                        log(f"W3 dependency chain, {target.name}")
                        results.setdefault("w3", {})[system] = _best(
                            [w3_chain.run(target, size["w3"]) for _ in range(repeat)], "hop_ms_p50", False)
                    if system == "piano":
                        results["worker_rss_mb"] = {"slots": PIANO_SLOTS, "after_w1_w3": pool.rss_mb()}
            if "w4" in only and system != "fork":  # enqueueing does not depend on the worker class
                log(f"W4 submit, {target.name}")
                results.setdefault("w4", {})["piano" if system == "piano" else "rq"] = _best(
                    [w4_submit.run(target, size["w4"]) for _ in range(repeat)], "tasks_per_s", True)
            target.close()
            conn.flushdb()
        if "w1" in only or "w2" in only:
            log("idle worker memory, 64 slots")
            with WorkerPool(url, "piano", 1, 64) as pool:
                time.sleep(1.0)
                results.setdefault("worker_rss_mb", {})["idle_64_slots"] = pool.rss_mb()[0]
            conn.flushdb()
        if "w5" in only:
            log("W5 locks")
            runs = [w5_locks.run(url, size["w5_pairs"], size["procs"], size["w5_rounds"], size["w5_one"]) for _ in range(repeat)]
            results["w5"] = {
                kind: {**_best([r[kind] for r in runs], "pairs_per_s", True),
                       **{k: v for k, v in _best([r[kind] for r in runs], "handoff_ms_p50", False).items()
                          if "handoff" in k}}
                for kind in ("piano", "python-redis-lock")}
            conn.flushdb()
        if "w6" in only:
            log("W6 state")
            runs = [w6_state.run(url, min(4, size["procs"]), size["w6_ops"], size["w6_notify"]) for _ in range(repeat)]
            best_ops = _best(runs, "ops_per_s", True)
            best_lat = _best(runs, "notify_ms_p50", False)
            results["w6"] = {"piano": {**best_ops, **{k: v for k, v in best_lat.items() if "notif" in k}}}
            conn.flushdb()
        if "w7" in only:
            if demo_available():
                from . import w7_agents

                log("W7 agents")
                results["w7"] = {"piano": w7_agents.run(url, mode)}
            else:
                results["w7"] = {"skipped": "needs the piano-dist demo (piano_dist.demo)"}
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    return results


def machine() -> dict:
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "load_avg_at_start": load}


# --- the table ---------------------------------------------------------------------------
def _f(value, digits=0, unit="") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value != value:
        return "n/a"
    return f"{value:,.{digits}f}{unit}"


def _ratio(a, b) -> str:
    if a is None or b is None or not b:
        return "-"
    return f"{a / b:.2f}x"


def rows(results: dict) -> list[tuple[str, ...]]:
    """(workload, figure, piano-dist, RQ SimpleWorker, RQ Worker (fork), ratio, target)."""
    out = []
    g = lambda *path: _dig(results, path)  # noqa: E731
    if "w1" in results:
        p, s, f = (g("w1", k, "tasks_per_s") for k in SYSTEMS)
        out.append(("W1 no-op", "tasks/s draining", _f(p), _f(s), _f(f), _ratio(p, s) + " SimpleWorker", ">= 6x"))
        out.append(("W1 no-op", "Redis commands/task", *(_f(g("w1", k, "commands_per_task"), 1) for k in SYSTEMS),
                    "", ""))
        out.append(("W1 no-op", "Redis bytes/completed task", *(_f(g("w1", k, "redis_bytes_per_task")) for k in SYSTEMS),
                    "", "(result TTL: piano 24h, RQ 500s)"))
    if "w2" in results:
        p, s, f = (g("w2", k, "wall_s") for k in SYSTEMS)
        out.append(("W2 I/O 50 ms", "wall s (slots)",
                    *(f"{_f(g('w2', k, 'wall_s'), 2)} ({g('w2', k, 'slots')})" if g("w2", k) else "-"
                      for k in SYSTEMS), "", ""))
        out.append(("W2 I/O 50 ms", "x ideal", *(_f(g("w2", k, "ratio_to_ideal"), 2, "x") for k in SYSTEMS),
                    _ratio(s, p) + " faster", "<= 1.2x"))
    if "w3" in results:
        out.append(("W3 chain", "hop ms p50", *(_f(g("w3", k, "hop_ms_p50"), 2) for k in SYSTEMS),
                    _ratio(g("w3", "simple", "hop_ms_p50"), g("w3", "piano", "hop_ms_p50")) + " faster", "<= 2 ms"))
        out.append(("W3 chain", "hop ms p95", *(_f(g("w3", k, "hop_ms_p95"), 2) for k in SYSTEMS), "", ""))
    if "w4" in results:
        p, r = g("w4", "piano", "tasks_per_s"), g("w4", "rq", "tasks_per_s")
        out.append(("W4 submit", "tasks/s (submit_many | enqueue_many)", _f(p), _f(r), "(same)", _ratio(p, r),
                    ">= 1.5x"))
    if "worker_rss_mb" in results:
        out.append(("memory", "idle worker, 64 slots, RSS MB", _f(g("worker_rss_mb", "idle_64_slots"), 1),
                    "", "", "", "< 100 MB"))
    if "w5" in results:
        p, l = g("w5", "piano"), g("w5", "python-redis-lock")
        out.append(("W5 locks", "WRITE acquire+release pairs/s", _f(p["pairs_per_s"]),
                    f"redis-lock {_f(l['pairs_per_s'])}", "", _ratio(p["pairs_per_s"], l["pairs_per_s"]),
                    ">= python-redis-lock"))
        out.append(("W5 locks", f"hand-off ms p50 / p95 ({p['handoff_processes']} procs)",
                    f"{_f(p['handoff_ms_p50'], 2)} / {_f(p['handoff_ms_p95'], 2)}",
                    f"redis-lock {_f(l['handoff_ms_p50'], 2)} / {_f(l['handoff_ms_p95'], 2)}", "", "",
                    "p50 <= 2 ms"))
        if "one_waiter_handoff_ms_p50" in p:
            out.append(("W5 locks", "hand-off ms p50 / p95 (1 waiter)",
                        f"{_f(p['one_waiter_handoff_ms_p50'], 2)} / {_f(p['one_waiter_handoff_ms_p95'], 2)}",
                        "", "", "", ""))
    if "w6" in results:
        p = g("w6", "piano")
        out.append(("W6 state", f"IMMEDIATE propose_change ops/s ({p['processes']} procs)", _f(p["ops_per_s"]), "", "", "", ""))
        out.append(("W6 state", "notification ms p50 / p95",
                    f"{_f(p['notify_ms_p50'], 2)} / {_f(p['notify_ms_p95'], 2)}", "", "", "", "p50 <= 5 ms"))
    if "w7" in results:
        w7 = results["w7"]
        if "skipped" in w7:
            out.append(("W7 agents", "W7: needs piano-dist demo", "not run", "", "", "", ""))
        else:
            for n, fig in sorted(w7["piano"].items(), key=lambda kv: int(kv[0])):
                out.append(("W7 agents", f"{n} agents: steps/s (x oracle); CPU ms/task",
                            f"{_f(fig['steps_per_s'])} ({_f(fig['ratio_to_oracle'], 2)}); "
                            f"{_f(fig['cpu_ms_per_task'], 2)}", "", "", "", ""))
    return out


def _dig(d, path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


HEADER = ("workload", "figure", "piano-dist", "RQ SimpleWorker", "RQ Worker (fork)", "ratio", "target")


def table(results: dict) -> str:
    body = [HEADER] + rows(results)
    widths = [max(len(r[i]) for r in body) for i in range(len(HEADER))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in body]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(quick: bool = False, json_path: str | None = None, tiny: bool = False, repeat: int = 1,
         only: tuple = WORKLOADS) -> dict:
    mode = "tiny" if tiny else "quick" if quick else "full"
    results = run_all(mode, repeat, only)
    print(table(results))
    path = Path(json_path or "benchmarks/results/latest.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=True))
    print(f"results written to {path}")
    return results
