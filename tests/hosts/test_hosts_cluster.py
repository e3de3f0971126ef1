"""Many machines on one box (Linux network namespaces): a password-protected Redis host,
two worker hosts with two workers each, a client host running
`piano-dist demo --external-workers` as a user would, over a real (virtual) network.

- the run completes across hosts;
- every worker process of one host SIGKILLed mid-run (a machine lost): the run still
  completes, every task `completed`, and the last task ends within lease + sweep
  interval + 5 s of the loss;
- Redis stopped (SIGTERM, AOF) and back 2.2 s later mid-run: the run completes with
  every task `completed` (module code, the client and workers ride it out).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from piano_dist.embedded import find_redis_server

from .lab import Lab, namespaces_available

pytestmark = pytest.mark.slow

AGENTS, TICKS, MODEL_SECONDS = 30, 3, 1.0
TASKS = AGENTS * TICKS * 5
PASSWORD = "lab p@ss/w"  # a space, an @ and a / : the URL must carry it percent-encoded
ENCODED = "lab%20p%40ss%2Fw"
PORT = 6379
LEASE, SWEEP = 10.0, 5.0  # the defaults
PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probe.py")

why_not = namespaces_available()
if why_not:
    pytest.skip(f"multi-host harness: {why_not}", allow_module_level=True)


def _env(url: str, home: str, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIANO_", "REDIS_URL", "RQ_REDIS_URL"))}
    env.update(PIANO_REDIS_URL=url, PIANO_HOME=home, PIANO_LEASE_SECONDS=str(LEASE),
               PIANO_STALLED_INTERVAL=str(SWEEP), **extra)
    return env


class Cluster:
    def __init__(self, lab: Lab, workdir):
        self.lab = lab
        self.workdir = workdir
        self.home = str(workdir / "piano-home")
        self.redis_host = lab.add_host("redis")
        self.worker_hosts = [lab.add_host("w1"), lab.add_host("w2")]
        self.client = lab.add_host("client")
        self.url = f"redis://:{ENCODED}@{self.redis_host.address}:{PORT}/0"
        self.data_dir = str(workdir / "redis-data")
        os.makedirs(self.data_dir)
        self.redis: subprocess.Popen | None = None
        self.workers: dict[str, list[subprocess.Popen]] = {}

    # --- Redis ------------------------------------------------------------------------
    def start_redis(self) -> None:
        self.redis = self.redis_host.popen(
            [find_redis_server(), "--bind", self.redis_host.address, "--port", str(PORT),
             "--requirepass", PASSWORD, "--dir", self.data_dir, "--appendonly", "yes", "--save", "",
             "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.until(lambda: self.ask(["PING"]) in ("PONG", "True"), 30, "Redis answering on the lab network")

    def stop_redis(self) -> None:
        self.redis.send_signal(signal.SIGTERM)  # persists the AOF and exits
        self.redis.wait(timeout=30)

    # --- asking from inside the lab ----------------------------------------------------
    def ask(self, command: list[str]) -> str:
        """One Redis command run on the client host; its reply as text ('' on error)."""
        code = ("import sys; from piano_dist.connection import client_for_url; "
                "c = client_for_url(sys.argv[1], retry_deadline=0, socket_connect_timeout=1); "
                "r = c.execute_command(*sys.argv[2:]); "
                "print(r.decode() if isinstance(r, bytes) else r)")
        out = self.client.run([sys.executable, "-c", code, self.url, *command], env=_env(self.url, self.home),
                              timeout=30)
        return out.stdout.strip() if out.returncode == 0 else ""

    def probe(self, run_id: str) -> dict:
        out = self.client.run([sys.executable, PROBE, run_id], env=_env(self.url, self.home), timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    @staticmethod
    def until(condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.2)

    # --- workers ------------------------------------------------------------------------
    def start_workers(self) -> None:
        for host in self.worker_hosts:
            self.workers[host.role] = [
                host.popen([sys.executable, "-m", "piano_dist.cli.main", "worker", "--concurrency", "16",
                            "--name", f"{host.role}-{i}", "--log-level", "WARNING"],
                           env=_env(self.url, self.home, PIANO_FAKE_LLM_LATENCY=str(MODEL_SECONDS)),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for i in (1, 2)]
        self.until(lambda: self.ask(["SCARD", "rq:workers"]) == "4", 60, "four workers registered")

    def stop_workers(self) -> None:
        for host in self.worker_hosts:
            host.stop_all()
        self.workers.clear()

    # --- the demo, run by a user on the client host -----------------------------------------
    def demo(self) -> "DemoProcess":
        self.runs = getattr(self, "runs", 0) + 1
        report = str(self.workdir / f"demo-{self.runs}.json")
        proc = self.client.popen(
            [sys.executable, "-m", "piano_dist.cli.main", "demo", "--external-workers", "--agents", str(AGENTS),
             "--ticks", str(TICKS), "--report", report, "--timeout", "600", "--progress-interval", "0.5",
             "--result-ttl", "600"],  # records kept: the probe reads which host ran each task
            env=_env(self.url, self.home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return DemoProcess(proc, report)


class DemoProcess:
    PROGRESS = re.compile(r"demo: (\d+)/(\d+) tasks ended")

    def __init__(self, proc: subprocess.Popen, report_path: str):
        self.proc = proc
        self.report_path = report_path
        self.done = 0
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line)
            match = self.PROGRESS.search(line)
            if match:
                self.done = int(match.group(1))

    def wait_for_progress(self, fraction: float, timeout: float = 300) -> None:
        Cluster.until(lambda: self.done >= fraction * TASKS or self.proc.poll() is not None, timeout,
                      f"{fraction:.0%} of the demo's tasks ended")
        assert self.proc.poll() is None, "the demo ended before the fault: the test proves nothing"

    def finish(self, timeout: float = 600) -> dict:
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        stdout = self.proc.stdout.read()
        assert self.proc.returncode == 0, "".join(self.stderr)[-3000:] + stdout[-2000:]
        with open(self.report_path) as fh:
            return json.load(fh)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with Lab() as lab:
        c = Cluster(lab, tmp_path_factory.mktemp("hosts-lab"))
        c.start_redis()
        yield c


@pytest.fixture
def running(cluster):
    cluster.ask(["FLUSHALL"])  # the lab's own Redis
    cluster.start_workers()
    yield cluster
    cluster.stop_workers()


def _summary(report: dict, probe: dict) -> str:
    return (f"{report['tasks']} tasks {report['tasks_by_status']} in {report['wall_seconds']} s; by worker "
            f"{probe['by_worker']}; {probe['attempted_more_than_once']} attempted more than once")


def test_hosts_demo_runs_across_machines(running):
    report = running.demo().finish()
    probe = running.probe(report["run_id"])
    print(_summary(report, probe))
    assert report["tasks_by_status"] == {"completed": TASKS}
    per_host = {host: sum(n for w, n in probe["by_worker"].items() if w.startswith(host)) for host in ("w1", "w2")}
    assert all(per_host.values()), per_host
    assert sum(per_host.values()) == TASKS


def test_hosts_a_lost_machine_costs_at_most_a_lease_and_a_sweep(running):
    demo = running.demo()
    demo.wait_for_progress(0.6)
    for proc in running.workers["w1"]:
        proc.send_signal(signal.SIGKILL)
    lost_at = time.time()
    for proc in running.workers["w1"]:
        proc.wait(timeout=10)
    report = demo.finish()
    probe = running.probe(report["run_id"])
    after = probe["last_end"] - lost_at
    print(f"{_summary(report, probe)}; last task ended {after:.1f} s after the loss")
    assert report["tasks_by_status"] == {"completed": TASKS}
    assert probe["attempted_more_than_once"] >= 1, "the lost host held no task: recovery was not exercised"
    assert after <= LEASE + SWEEP + 5, f"last task ended {after:.1f} s after the machine was lost"


def test_hosts_redis_restart_mid_run_loses_no_task(running):
    demo = running.demo()
    demo.wait_for_progress(0.3)
    running.stop_redis()
    time.sleep(2.2)  # the outage under test
    running.start_redis()
    report = demo.finish()
    probe = running.probe(report["run_id"])
    print(_summary(report, probe))
    assert report["tasks_by_status"] == {"completed": TASKS}
    assert all(proc.poll() is None for procs in running.workers.values() for proc in procs), "a worker exited"
