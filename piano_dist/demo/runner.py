"""DemoRun: set the world up, start workers (or use external ones), submit every
agent's ticks as one task graph, follow progress and report."""
from __future__ import annotations

import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from ..arguments import MAX_TTL, is_whole
from ..connection import connection_url
from ..llm.report import llm_report, llm_snapshot
from ..manager import ConcurrentModuleManager
from ..state.store import StateStore
from .journal import RunJournal
from .oracle import model_oracle
from .timeline import timeline_data, write_timeline
from .workload import Workload, agent_ids, summarise_statuses

# Statuses a task ends in (TaskStatus.is_terminal), as the group counters name them.
TERMINAL = ("completed", "failed", "timed_out", "cancelled", "dependency_failed")


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
    timeline_path: str | None = None
    worker_env: dict = field(default_factory=dict)
    # Seconds each task's record stays once it ends. 0 (the default): none is kept, the
    # report is built from the tasks' "finished" events (demo/journal.py); more keeps
    # them for looking at (rq-dashboard, `piano-dist status TASK_ID`).
    result_ttl: int = 0

    def validate(self) -> None:
        for name in ("agents", "ticks", "workers", "concurrency"):
            value = getattr(self, name)
            if not is_whole(value) or value < (0 if name == "workers" else 1):
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if not self.external_workers and self.workers < 1:
            raise ValueError("workers must be at least 1 unless --external-workers is given")
        if self.llm_latency < 0:
            raise ValueError(f"llm latency must be ≥ 0 seconds, not {self.llm_latency!r}")
        if not is_whole(self.result_ttl) or not 0 <= self.result_ttl <= MAX_TTL:
            raise ValueError(f"result ttl must be whole seconds from 0 to {MAX_TTL}, not {self.result_ttl!r}")


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
                                 config.ticks, config.seed, result_ttl=config.result_ttl)
        self.worker_procs: list[subprocess.Popen] = []
        self.worker_names: list[str] = []
        self.task_ids: list[str] = []
        self.llm_in_flight_peak = 0
        # (seconds since the run started, model calls in flight, tasks ended) every sample.
        self.samples: list[tuple[float, int, int]] = []
        self._baseline: dict[str, float] = {}
        self._workers_cpu_before: dict[str, float] = {}
        self._started = 0.0
        self._started_epoch = 0.0  # the wall clock at _started: task times are epoch seconds
        self.statuses: dict[str, dict | None] = {}
        self._without_event = 0
        self.ended_counts: dict[str, int] = {}  # the run's group counters at the last read
        self.journal = RunJournal(self.manager.client.events)
        self.timeline_written = False
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
        """Start the demo's workers and wait until each has registered and reported its
        first figures, so the run's wall time and CPU measure the agents, not Python
        starting up."""
        names = [f"{self.workload.run_id}-w{i + 1}" for i in range(self.config.workers)]
        procs = [self.start_worker(name) for name in names]
        deadline = time.monotonic() + ready_timeout
        while len(self._worker_cpu(names)) < len(names):
            dead = [p for p in procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"a demo worker exited with code {dead[0].returncode} while starting")
            if time.monotonic() > deadline:
                raise TimeoutError(f"demo workers did not start within {ready_timeout}s")
            time.sleep(0.05)
        self.worker_names = names

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

    def _worker_cpu(self, names: list[str]) -> dict[str, float]:
        """CPU seconds each worker reports of itself (user + sys, from its rusage)."""
        with self.connection.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hget(self.manager.keys.worker_metrics(name), "cpu_seconds")
            values = pipe.execute()
        return {n: float(v) for n, v in zip(names, values) if v is not None}

    def _live_workers(self) -> list[str]:
        return [w["name"] for w in self.manager.module_executor.worker_metrics()]

    # --- the run ---------------------------------------------------------------------
    def _counters(self) -> dict[str, float]:
        """Cluster counters this run adds to (they outlive runs: the report shows deltas)."""
        changes = conflicts = 0
        for agent in self.workload.agents:
            agent_stats = StateStore(agent, connection=self.connection, prefix=self.prefix).stats()
            changes += agent_stats.get("total_changes", 0)
            conflicts += agent_stats.get("conflicts_resolved", 0)
        llm_calls = int(self.connection.get(self.manager.keys.llm_key("calls")) or 0)
        return {"state_changes": changes, "state_conflicts_resolved": conflicts, "llm_calls": llm_calls}

    def _redis_figures(self) -> dict[str, float]:
        """Commands Redis has run (scripts' inner commands included) and memory in use."""
        stats = self.connection.info("commandstats")
        commands = sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_info",))
        return {"redis_commands": commands, "redis_used_memory": self.connection.info("memory")["used_memory"]}

    def setup(self) -> None:
        self._baseline = self._counters()
        self._llm_before = llm_snapshot(self.connection, self.manager.keys)
        self.workload.build_world(self.connection, self.prefix)
        self.workload.seed_agents(self.connection, self.prefix)
        self.workload.register_modules(self.manager.client.registry, self.prefix)

    def submit(self) -> None:
        batches = self.workload.batches()
        # The ids are the run's own, known before anything is sent: an interrupt during
        # the submission still finds every task it may have stored, to cancel it.
        self.task_ids = [spec.task_id for batch in batches for spec in batch]
        self.journal.expect(self.task_ids)
        # Each batch is one script: none of its tasks ends before all are stored. Sent
        # through the client, not the manager: the run follows its tasks through their
        # group and events, and the manager's active_tasks bookkeeping re-reads every
        # status it tracks when enough pile up (~40 % of the demo process's samples while
        # submitting 200 agents × 20 ticks).
        for batch in batches:
            self.manager.client.submit_many(batch)

    def follow(self, on_progress: Callable[[int, int], None] | None = None) -> None:
        """Block until every task has ended: one read of the run's group counters (and of
        the model calls in flight, for the timeline) every quarter second."""
        total = len(self.task_ids)
        deadline = time.monotonic() + self.config.timeout
        llm_key = self.manager.keys.llm_key("in_flight")
        group_key = self.manager.keys.group(self.workload.run_id)
        while True:
            with self.connection.pipeline(transaction=False) as pipe:
                pipe.hmget(group_key, *TERMINAL)
                pipe.get(llm_key)
                ended_counts, in_flight = pipe.execute()
            self.ended_counts = {status: int(c or 0) for status, c in zip(TERMINAL, ended_counts)}
            done = sum(self.ended_counts.values())
            in_flight = int(in_flight or 0)
            self.samples.append((round(time.monotonic() - self._started, 3), in_flight, done))
            self.llm_in_flight_peak = max(self.llm_in_flight_peak, in_flight)
            if on_progress:
                on_progress(done, total)
            if done >= total:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"demo did not finish within {self.config.timeout}s ({done}/{total} tasks ended)")
            time.sleep(0.25)

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

    def _work_done(self) -> dict[str, int]:
        """What the agents did, counted from what they left in Redis: memories written,
        thoughts from reflection, world steps by outcome."""
        kinds = ("event", "thought")
        with self.connection.pipeline(transaction=False) as pipe:
            for agent in self.workload.agents:
                base = self.manager.keys.memory_base(agent, "associative", "default")
                for kind in kinds:
                    pipe.zcard(f"{base}:bytype:{kind}")
            pipe.hgetall(self.manager.keys.demo_stats(self.workload.run_id))
            rows = pipe.execute()
        counts = {"memory_events": sum(rows[0:-1:2]), "memory_thoughts": sum(rows[1:-1:2])}
        for k, v in rows[-1].items():
            counts[k.decode()] = int(v)
        return counts

    def report(self, wall: float, workers_cpu: float, redis_after: dict[str, float]) -> dict[str, Any]:
        self.journal.wait_for_all(timeout=5.0)
        self.statuses = statuses = self._statuses()
        # Counted by the run's group, which every way a task ends adds to: not by the
        # events, which a lost subscription can miss.
        by_status = {status: n for status, n in self.ended_counts.items() if n}
        unaccounted = len(self.task_ids) - sum(by_status.values())
        if unaccounted > 0:
            by_status["missing"] = unaccounted
        elif unaccounted < 0:  # a task ended twice: stored again by a repeat nothing recognised
            by_status["ended_twice"] = -unaccounted
        timing = summarise_statuses(self.workload, statuses)
        latencies = timing["tick_latencies"]
        steps = len(latencies)
        counters = {k: v - self._baseline.get(k, 0) for k, v in self._counters().items()}
        slots = self._slot_count()
        oracle = model_oracle(self.workload.specs(), statuses, slots)
        tasks = len(self.task_ids)
        commands = redis_after["redis_commands"] - self._baseline["redis_commands"]
        memory = redis_after["redis_used_memory"] - self._baseline["redis_used_memory"]
        return {
            "run_id": self.workload.run_id,
            "config": {**{k: v for k, v in asdict(self.config).items() if k != "worker_env"},
                       "handoff_ttl": self.workload.handoff_ttl},
            "wall_seconds": round(wall, 3),
            "tasks": tasks,
            "tasks_by_status": by_status,
            "agent_steps": steps,
            "agent_steps_per_second": round(steps / wall, 3) if wall else None,
            "ticks_per_second": round(steps / len(self.workload.agents) / wall, 3) if wall else None,
            "tick_latency_p50_seconds": _round(percentile(latencies, 0.5)),
            "tick_latency_p95_seconds": _round(percentile(latencies, 0.95)),
            "slots": slots,
            # The best any schedule could do given the model's own latencies (inputs the
            # system does not control): see demo/oracle.py.
            "oracle_seconds": oracle["oracle_seconds"],
            "oracle_chain_seconds": oracle["chain_seconds"],
            "oracle_work_seconds": oracle["work_seconds"],
            "ratio_to_oracle": round(oracle["oracle_seconds"] / wall, 3) if wall else None,
            "model_seconds": oracle["model_seconds"],
            "model_calls": oracle["model_calls"],
            "cpu_ms_per_task": round(workers_cpu * 1000 / tasks, 3) if tasks else None,
            "redis_commands_per_agent_step": round(commands / steps, 1) if steps else None,
            "redis_bytes_per_task": round(memory / tasks) if tasks else None,
            "redis_used_memory_bytes": int(redis_after["redis_used_memory"]),
            # Tasks whose times came from their records, not their events (the journal's
            # subscription was lost meanwhile); with no record kept they have no times.
            "tasks_without_event": self._without_event,
            **counters,
            **self._work_done(),
            "llm_in_flight_peak": self.llm_in_flight_peak,
            "llm_in_flight_mean": round(statistics.fmean(s[1] for s in self.samples), 2) if self.samples else 0,
            "llm": llm_report(self.connection, self.manager.keys, self._llm_before),
        }

    def _statuses(self) -> dict[str, dict | None]:
        """Each task's status: from its "finished" event, else from its record (None
        when neither: not ended, or ended while the journal was not subscribed)."""
        statuses: dict[str, dict | None] = dict(self.journal.snapshot())
        missed = [task_id for task_id in self.task_ids if task_id not in statuses]
        self._without_event = len(missed)
        if missed:
            statuses.update(self.manager.client.get_statuses(missed))
        return statuses

    def _slot_count(self) -> int:
        if not self.config.external_workers:
            return self.config.workers * self.config.concurrency
        return sum(w["slots"] for w in self.manager.module_executor.worker_metrics())

    def _measure_workers_cpu(self) -> float:
        """CPU the workers spent during the run: for the demo's own workers, their rusage
        once they have exited, less what they had spent when the run started; for
        external workers, the difference of their own latest reports."""
        if self.config.external_workers:
            time.sleep(2.2)  # workers report every 2 s: wait for a report from after the run
            after = self._worker_cpu(list(self._workers_cpu_before))
            return sum(after.get(n, v) - v for n, v in self._workers_cpu_before.items())
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.stop_workers()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        spent = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        return max(0.0, spent - sum(self._workers_cpu_before.values()))

    def run(self, on_progress: Callable[[int, int], None] | None = None,
            on_started: Callable[["DemoRun"], None] | None = None) -> dict[str, Any]:
        try:
            self.setup()
            if not self.config.external_workers:
                self.start_workers()
            self._workers_cpu_before = self._worker_cpu(self.worker_names or self._live_workers())
            self.journal.start()  # subscribed before any task is submitted
            self._baseline.update(self._redis_figures())
            self._started_epoch, self._started = time.time(), time.monotonic()
            started = self._started
            self.submit()
            if on_started:
                on_started(self)
            self.follow(on_progress)
            wall = time.monotonic() - started
            redis_after = self._redis_figures()
            workers_cpu = self._measure_workers_cpu()
            result = self.report(wall, workers_cpu, redis_after)
        except BaseException:  # timed out, interrupted, failed: leave nothing queued behind
            self.cancel_unfinished()
            self._write_timeline_of_unfinished_run()
            raise
        finally:
            self.journal.stop()
            if not self.config.external_workers:
                self.stop_workers()
            self.workload.unregister_modules(self.manager.client.registry)
            self.manager.shutdown()
        if self.config.report_path:
            with open(self.config.report_path, "w") as fh:
                json.dump(result, fh, indent=2, sort_keys=True)
        if self.config.timeline_path:
            self.write_timeline(result["wall_seconds"], result)
        return result

    # --- the timeline page ---------------------------------------------------------------
    def write_timeline(self, wall: float, report: dict[str, Any] | None = None) -> int:
        """The run as a self-contained HTML page (demo/timeline.py) at config.timeline_path."""
        data = timeline_data(self.workload, self.statuses, started_at=self._started_epoch, wall_seconds=wall,
                             samples=self.samples, slots=report["slots"] if report else self._slot_count(),
                             summary=timeline_summary(self.config, wall, report))
        size = write_timeline(self.config.timeline_path, data)
        self.timeline_written = True
        return size

    def _write_timeline_of_unfinished_run(self) -> None:
        """A run cut short still gets its picture (what ran, what never started), if Redis answers."""
        if not (self.config.timeline_path and self._started and self.task_ids):
            return
        try:
            self.journal.wait_for_all(timeout=2.0)  # the cancelled tasks' events
            self.statuses = self._statuses()
            self.write_timeline(time.monotonic() - self._started)
        except Exception:  # noqa: BLE001 - the run's own error is the one to report
            pass


def timeline_summary(config: DemoConfig, wall: float, report: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The figures shown above the timeline (a run cut short has no report)."""
    workers = "" if config.external_workers else \
        f"{config.workers} worker{'s' * (config.workers != 1)} × {config.concurrency} slots"
    if not report:
        return [("agents × ticks", f"{config.agents} × {config.ticks}"), ("workers", workers or "external"),
                ("run", f"cut short after {wall:.2f} s (timed out or interrupted): its unfinished tasks were cancelled")]
    return [("agents × ticks", f"{config.agents} × {config.ticks}"),
            ("slots", f"{report['slots']}" + (f" ({workers})" if workers else "")),
            ("wall", f"{report['wall_seconds']:.2f} s"),
            ("agent-steps/s", f"{report['agent_steps_per_second']}"),
            ("model oracle", f"{report['oracle_seconds']:.2f} s (ratio {report['ratio_to_oracle']})"),
            ("tasks", ", ".join(f"{k} {v}" for k, v in sorted(report["tasks_by_status"].items()))),
            ("model calls in flight, peak", f"{report['llm_in_flight_peak']}")]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
