"""DemoRun: set the world up, start workers (or use external ones), submit every
agent's ticks as one task graph, follow progress and report."""
from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from ..connection import connection_url
from ..core.types import TaskStatus
from ..llm.report import llm_report, llm_snapshot
from ..manager import ConcurrentModuleManager
from ..state.store import StateStore
from .workload import Workload, agent_ids, summarise_statuses


@dataclass
class DemoConfig:
    agents: int = 25
    ticks: int = 5
    workers: int = 2
    concurrency: int = 16
    seed: int = 0
    llm_latency: float = 0.05
    external_workers: bool = False
    timeout: float = 900.0
    report_path: str | None = "piano-demo-report.json"
    worker_env: dict = field(default_factory=dict)

    def validate(self) -> None:
        for name in ("agents", "ticks", "workers", "concurrency"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "workers" else 1):
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if not self.external_workers and self.workers < 1:
            raise ValueError("workers must be at least 1 unless --external-workers is given")
        if self.llm_latency < 0:
            raise ValueError(f"llm latency must be ≥ 0 seconds, not {self.llm_latency!r}")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class DemoRun:
    def __init__(self, config: DemoConfig, redis_url: str | None = None):
        config.validate()
        self.config = config
        self.manager = ConcurrentModuleManager(max_workers=0, max_queue_size=0, task_timeout=120.0,
                                               redis_url=redis_url, agent_id="demo")
        self.connection = self.manager.connection
        self.prefix = self.manager.keys.prefix
        self.workload = Workload(f"demo{config.seed}-{uuid.uuid4().hex[:6]}", agent_ids(config.agents),
                                 config.ticks, config.seed)
        self.worker_procs: list[subprocess.Popen] = []
        self.task_ids: list[str] = []
        self._ended: set[str] = set()
        self._progress = threading.Condition()
        self.llm_in_flight_peak = 0
        self._llm_samples: list[int] = []
        self._baseline: dict[str, int] = {}
        self._llm_before: dict[str, float] = {}

    # --- workers -------------------------------------------------------------------
    def worker_environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"PIANO_REDIS_URL": connection_url(self.connection), "PIANO_PREFIX": self.prefix,
                    "PIANO_FAKE_LLM_SEED": str(self.config.seed),
                    "PIANO_FAKE_LLM_LATENCY": str(self.config.llm_latency)})
        env.setdefault("PIANO_LLM_SEED", str(self.config.seed))  # seeded requests: a replay can hit the cache
        env.update(self.config.worker_env)
        return env

    def start_workers(self, ready_timeout: float = 60.0) -> None:
        """Start the demo's workers and wait until each has registered, so the run's
        wall time measures the agents, not Python starting up."""
        names = [f"{self.workload.run_id}-w{i + 1}" for i in range(self.config.workers)]
        procs = [self.start_worker(name) for name in names]
        keys = [self.manager.keys.rq_worker(name) for name in names]
        deadline = time.monotonic() + ready_timeout
        while self.connection.exists(*keys) < len(keys):
            dead = [p for p in procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"a demo worker exited with code {dead[0].returncode} while starting")
            if time.monotonic() > deadline:
                raise TimeoutError(f"demo workers did not start within {ready_timeout}s")
            time.sleep(0.05)

    def start_worker(self, name: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-m", "piano_dist.cli.main", "worker", "--concurrency", str(self.config.concurrency),
             "--name", name, "--log-level", "WARNING"],
            env=self.worker_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.worker_procs.append(proc)
        return proc

    def stop_workers(self) -> None:
        for proc in self.worker_procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.worker_procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    # --- the run ---------------------------------------------------------------------
    def _counters(self) -> dict[str, int]:
        """Cluster counters this run adds to (they outlive runs: the report shows deltas)."""
        changes = conflicts = 0
        for agent in self.workload.agents:
            agent_stats = StateStore(agent, connection=self.connection, prefix=self.prefix).stats()
            changes += agent_stats.get("total_changes", 0)
            conflicts += agent_stats.get("conflicts_resolved", 0)
        llm_calls = int(self.connection.get(self.manager.keys.llm_key("calls")) or 0)
        return {"state_changes": changes, "state_conflicts_resolved": conflicts, "llm_calls": llm_calls}

    def setup(self) -> None:
        self._baseline = self._counters()
        self._llm_before = llm_snapshot(self.connection, self.manager.keys)
        self.workload.build_world(self.connection, self.prefix)
        self.workload.seed_agents(self.connection, self.prefix)
        self.workload.register_modules(self.manager.client.registry, self.prefix)

    def _on_task_completed(self, task_id: str, success: bool) -> None:
        if task_id.startswith(self.workload.run_id):
            with self._progress:
                self._ended.add(task_id)
                self._progress.notify_all()

    def submit(self) -> None:
        self.manager.add_event_callback("task_completed", self._on_task_completed)
        self.task_ids = self.manager.submit_many(self.workload.specs())

    def follow(self, on_progress: Callable[[int, int], None] | None = None) -> None:
        """Block until every task has ended; report progress from task events, and
        confirm from Redis every few seconds (pub/sub may drop a message)."""
        total = len(self.task_ids)
        deadline = time.monotonic() + self.config.timeout
        last_check = time.monotonic()
        llm_key = self.manager.keys.llm_key("in_flight")
        while True:
            with self._progress:
                self._progress.wait(timeout=0.5)
                done = len(self._ended)
            in_flight = int(self.connection.get(llm_key) or 0)
            self._llm_samples.append(in_flight)
            self.llm_in_flight_peak = max(self.llm_in_flight_peak, in_flight)
            if on_progress:
                on_progress(done, total)
            if done >= total or time.monotonic() - last_check > 3:
                last_check = time.monotonic()
                statuses = self.manager.client.get_statuses(self.task_ids)
                ended = {tid for tid, st in statuses.items() if st and TaskStatus(st["status"]).is_terminal}
                with self._progress:
                    self._ended |= ended
                if len(ended) == total:
                    if on_progress:
                        on_progress(total, total)
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"demo did not finish within {self.config.timeout}s "
                                   f"({len(self._ended)}/{total} tasks ended)")

    def cancel_unfinished(self, reason: str = "the demo run ended early (timeout or interrupt)") -> int:
        """Cancel this run's tasks that have not ended (running ones get the cancel flag),
        so that none stays queued for a module about to be unregistered. Returns how many."""
        if not self.task_ids:
            return 0
        try:
            outcomes = self.manager.client.cancel_many(self.task_ids, reason)
        except Exception:  # Redis gone too: nothing more to do here
            return 0
        return sum(1 for o in outcomes if o)

    def report(self, wall: float) -> dict[str, Any]:
        statuses = self.manager.client.get_statuses(self.task_ids)
        by_status: dict[str, int] = {}
        for st in statuses.values():
            by_status[st["status"]] = by_status.get(st["status"], 0) + 1
        timing = summarise_statuses(self.workload, statuses)
        latencies = timing["tick_latencies"]
        steps = len(latencies)
        stats = {k.decode(): float(v) for k, v in
                 self.connection.hgetall(self.manager.keys.demo_stats(self.workload.run_id)).items()}
        counters = {k: v - self._baseline.get(k, 0) for k, v in self._counters().items()}
        cfg = self.config
        slots = self._slot_count()
        # The best any schedule can do: no shorter than the longest agent's chain, and no
        # shorter than all the work spread evenly over every slot.
        work_bound = timing["busy_seconds"] / slots if slots else 0.0
        ideal = max(timing["critical_path_seconds"], work_bound)
        return {
            "run_id": self.workload.run_id,
            "config": {k: v for k, v in asdict(cfg).items() if k != "worker_env"},
            "wall_seconds": round(wall, 3),
            "tasks": len(self.task_ids),
            "tasks_by_status": by_status,
            "agent_steps": steps,
            "agent_steps_per_second": round(steps / wall, 3) if wall else None,
            "ticks_per_second": round(steps / len(self.workload.agents) / wall, 3) if wall else None,
            "tick_latency_p50_seconds": _round(percentile(latencies, 0.5)),
            "tick_latency_p95_seconds": _round(percentile(latencies, 0.95)),
            "critical_path_seconds": round(timing["critical_path_seconds"], 3),
            "work_bound_seconds": round(work_bound, 3),
            "slots": slots,
            "critical_path_ideal_seconds": round(ideal, 3),
            "ratio_to_ideal": round(ideal / wall, 3) if wall else None,
            "lock_waits": int(stats.get("lock_waits", 0)),
            "lock_wait_seconds": round(stats.get("lock_wait_seconds", 0.0), 3),
            "actions": int(stats.get("actions", 0)),
            **counters,
            "llm_in_flight_peak": self.llm_in_flight_peak,
            "llm_in_flight_mean": round(statistics.fmean(self._llm_samples), 2) if self._llm_samples else 0,
            "llm": llm_report(self.connection, self.manager.keys, self._llm_before),
        }

    def _slot_count(self) -> int:
        if not self.config.external_workers:
            return self.config.workers * self.config.concurrency
        return sum(w["slots"] for w in self.manager.module_executor.worker_metrics())

    def run(self, on_progress: Callable[[int, int], None] | None = None,
            on_started: Callable[["DemoRun"], None] | None = None) -> dict[str, Any]:
        try:
            self.setup()
            if not self.config.external_workers:
                self.start_workers()
            started = time.monotonic()
            self.submit()
            if on_started:
                on_started(self)
            self.follow(on_progress)
            result = self.report(time.monotonic() - started)
        except BaseException:  # timed out, interrupted, failed: leave nothing queued behind
            self.cancel_unfinished()
            raise
        finally:
            if not self.config.external_workers:
                self.stop_workers()
            self.workload.unregister_modules(self.manager.client.registry)
            self.manager.shutdown()
        if self.config.report_path:
            with open(self.config.report_path, "w") as fh:
                json.dump(result, fh, indent=2, sort_keys=True)
        return result


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
