"""Model calls from real worker processes against a real OpenAI-compatible stub that
enforces its own rate limit: the cluster-wide limiter keeps a run under the endpoint's
limit, Retry-After holds every worker, a persistent 500 fails the task in time, the
cache is shared between processes, accounting is per module and agent, and the demo
runs against the stub."""
import json
import os
import subprocess
import sys

import pytest
from support.workers import WorkerProcess

from piano_dist import ConcurrentModuleManager, Priority
from piano_dist.core.client import TaskSpec
from piano_dist.demo import DemoConfig, DemoRun
from piano_dist.llm.stub_server import StubEndpoint, StubLog
from support.llm_modules import ModelCaller


@pytest.fixture
def stub():
    endpoint = StubEndpoint(limit=40, window=1.0, latency=0.05).start()  # 40 per second, like 2,400 RPM
    yield endpoint
    endpoint.stop()


@pytest.fixture
def manager(redis_url):
    mgr = ConcurrentModuleManager(max_workers=0, max_queue_size=0, redis_url=redis_url, agent_id="registered-agent")
    mgr.register_module("caller", ModelCaller(), {})
    yield mgr
    mgr.shutdown()


def _env(stub, **settings):
    env = {"PIANO_LLM": "openai", "PIANO_LLM_URL": stub.url + "/v1", "PIANO_LLM_MODEL": "stub-model"}
    env.update({f"PIANO_LLM_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def _workers(redis_url, env, n=2, concurrency=32, **kw):
    return [WorkerProcess(redis_url, concurrency=concurrency, env=env, **kw) for _ in range(n)]


def _run(manager, n, timeout=120, **kwargs):
    ids = manager.submit_many([TaskSpec("caller", "run", kwargs={"prompt": f"call {i}", **kwargs})
                               for i in range(n)])
    return manager.wait(ids, timeout=timeout)


def _cli_json(redis_url, *args):
    env = dict(os.environ, PIANO_REDIS_URL=redis_url)
    out = subprocess.run([sys.executable, "-m", "piano_dist.cli.main", "llm", "--json", *args], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.slow
def test_with_rpm_below_the_endpoints_limit_two_workers_see_no_429(redis_url, stub, manager):
    workers = _workers(redis_url, _env(stub, rpm=1800))  # 30 per second against the stub's 40
    try:
        statuses = _run(manager, 300)
    finally:
        for w in workers:
            w.stop()
    assert {st["status"] for st in statuses.values()} == {"completed"}
    assert stub.log.count(429) == 0
    accepted = stub.log.accepted_times()
    assert len(accepted) == 300
    # Under the endpoint's own limit in every second, and 1,800 RPM on average. (Pacing to
    # the request is checked on the limiter's own clock in test_llm_limiter: here the time
    # between a grant and its arrival varies with the load on the machine.)
    assert StubLog.max_in_window(accepted, 1.0) <= 40
    assert (len(accepted) - 5) / (max(accepted) - min(accepted)) <= 1800 / 60
    report = _cli_json(redis_url)
    assert report["total"]["rate_limited"] == 0 and report["total"]["limiter_waits"] > 0


@pytest.mark.slow
def test_without_a_limiter_429s_happen_and_every_task_completes_through_retry_after(redis_url, stub, manager):
    workers = _workers(redis_url, _env(stub))
    try:
        statuses = _run(manager, 300)
    finally:
        for w in workers:
            w.stop()
    assert {st["status"] for st in statuses.values()} == {"completed"}
    assert stub.log.count(429) > 0
    assert len(stub.log.accepted_times()) == 300
    report = _cli_json(redis_url)
    assert report["total"]["rate_limited"] == stub.log.count(429)
    assert report["total"]["calls"] == 300 and report["total"]["errors"] == 0


def test_a_429_pauses_every_worker_for_its_retry_after(redis_url, manager):
    stub = StubEndpoint(latency=0.02).start()
    workers = _workers(redis_url, _env(stub), n=2, concurrency=8)
    try:
        assert {st["status"] for st in _run(manager, 16).values()} == {"completed"}  # both warm
        stub.fail_next(429, retry_after=3)
        statuses = _run(manager, 64)
    finally:
        for w in workers:
            w.stop()
        stub.stop()
    assert {st["status"] for st in statuses.values()} == {"completed"}
    (refused,) = [t for t, _, status in stub.log.arrivals if status == 429]
    # Calls already on their way when the 429 went out may still arrive; after that,
    # nothing until 3 s after the refused request was sent.
    quiet = [t for t, _, _ in stub.log.arrivals if refused + 0.25 < t < refused + 3 - 0.25]
    assert quiet == []
    assert any(t >= refused + 2.75 for t, _, _ in stub.log.arrivals)


def test_a_persistent_500_fails_the_task_within_the_deadline(redis_url, manager):
    stub = StubEndpoint().start()
    stub.fail_always(500)
    (worker,) = _workers(redis_url, _env(stub, retry_deadline=4), n=1, concurrency=2)
    try:
        (status,) = _run(manager, 1, timeout=60).values()
    finally:
        worker.stop()
        stub.stop()
    assert status["status"] == "failed"
    arrivals = [t for t, _, _ in stub.log.arrivals]
    assert arrivals[-1] - arrivals[0] >= 2.0  # retried for at least half the deadline
    assert status["ended_at"] - status["started_at"] <= 4 + 10
    assert "HTTP 500" in status["error"] and stub.url in status["error"]


def test_the_cache_is_shared_between_worker_processes(redis_url, manager):
    stub = StubEndpoint().start()
    env = _env(stub, cache=1)
    first = WorkerProcess(redis_url, concurrency=2, env=env, queues=["high"])
    second = WorkerProcess(redis_url, concurrency=2, env=env, queues=["low"])
    try:
        a = manager.submit_task("caller", "run", kwargs={"prompt": "same question", "temperature": 0},
                                priority=Priority.HIGH)
        answer_a = manager.get_result(a, timeout=30)
        b = manager.submit_task("caller", "run", kwargs={"prompt": "same question", "temperature": 0},
                                priority=Priority.LOW)
        answer_b = manager.get_result(b, timeout=30)
        # Sampled answers (temperature 0.7, no seed) are not cached.
        c = manager.submit_task("caller", "run", kwargs={"prompt": "same question", "temperature": 0.7},
                                priority=Priority.LOW)
        d = manager.submit_task("caller", "run", kwargs={"prompt": "same question", "temperature": 0.7},
                                priority=Priority.HIGH)
        manager.wait([c, d], timeout=30)
        # An explicit seed makes them cacheable again.
        e = manager.submit_task("caller", "run", kwargs={"prompt": "other", "temperature": 0.7, "seed": 3},
                                priority=Priority.HIGH)
        manager.get_result(e, timeout=30)
        f = manager.submit_task("caller", "run", kwargs={"prompt": "other", "temperature": 0.7, "seed": 3},
                                priority=Priority.LOW)
        manager.get_result(f, timeout=30)
        workers = {manager.get_task_status(t)["worker"] for t in (a, b)}
    finally:
        first.stop()
        second.stop()
        stub.stop()
    assert answer_a == answer_b and len(workers) == 2  # answered in two processes
    assert stub.log.count(200) == 1 + 2 + 1
    total = _cli_json(redis_url)["total"]
    assert total["cache_hits"] == 2 and total["calls"] == 6
    assert total["cache_hit_rate"] == pytest.approx(2 / 6, abs=1e-3)


def test_accounting_per_module_and_agent_with_cost(redis_url, manager, redis_client):
    stub = StubEndpoint(completion_tokens=50).start()
    manager.register_module("other_caller", ModelCaller(), {})
    (worker,) = _workers(redis_url, _env(stub, price_in=0.5, price_out=2.0, rpm=6000), n=1, concurrency=8)
    try:
        ids = manager.submit_many(
            [TaskSpec("caller", "run", kwargs={"prompt": "abcd" * 10, "n": 2}, agent_id="alice"),
             TaskSpec("caller", "run", kwargs={"prompt": "abcd" * 10}),  # the registration's agent
             TaskSpec("other_caller", "run", kwargs={"prompt": "abcd" * 10, "n": 3}, agent_id="alice")])
        statuses = manager.wait(ids, timeout=60)
    finally:
        worker.stop()
        stub.stop()
    assert {st["status"] for st in statuses.values()} == {"completed"}
    report = _cli_json(redis_url)
    modules, agents = report["modules"], report["agents"]
    assert set(modules) == {"caller", "other_caller"} and set(agents) == {"alice", "registered-agent"}
    assert modules["caller"]["calls"] == 3 and modules["other_caller"]["calls"] == 3
    assert agents["alice"]["calls"] == 5 and agents["registered-agent"]["calls"] == 1
    group = agents["registered-agent"]
    for field in ("calls", "prompt_tokens", "completion_tokens", "cost", "cache_hits"):
        assert field in group
    assert group["completion_tokens"] == 50 and group["prompt_tokens"] == 4 + 10  # usage from the reply
    assert group["cost"] == pytest.approx((14 * 0.5 + 50 * 2.0) / 1000)
    assert group["latency_p50_seconds"] is not None and group["latency_p95_seconds"] is not None
    assert report["total"]["calls"] == 6 and report["total"]["limiter_waits"] >= 1
    assert list(report["endpoints"]) == [f"{stub.url} stub-model"]
    # Text output and reset.
    env = dict(os.environ, PIANO_REDIS_URL=redis_url)
    text = subprocess.run([sys.executable, "-m", "piano_dist.cli.main", "llm"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert text.returncode == 0 and "6 calls" in text.stdout and "other_caller" in text.stdout
    subprocess.run([sys.executable, "-m", "piano_dist.cli.main", "llm", "reset"], env=env, check=True,
                   capture_output=True, timeout=60)
    assert _cli_json(redis_url)["modules"] == {} and _cli_json(redis_url)["total"]["calls"] == 0


def _demo(redis_url, env, **config) -> dict:
    run = DemoRun(DemoConfig(report_path=None, worker_env=env, **config), redis_url=redis_url)
    return run.run()


@pytest.mark.slow
def test_the_demo_runs_against_the_stub_and_reports_tokens_cost_and_limiter_waits(redis_url):
    stub = StubEndpoint(limit=600, window=60.0, latency=0.02).start()
    try:
        report = _demo(redis_url, _env(stub, rpm=480, price_in=0.15, price_out=0.6),
                       agents=4, ticks=2, workers=2, concurrency=4)
    finally:
        stub.stop()
    assert report["tasks_by_status"] == {"completed": 4 * 2 * 5}
    llm = report["llm"]
    assert llm["calls"] == stub.log.count(200) > 0 and llm["errors"] == 0
    assert llm["prompt_tokens"] > 0 and llm["completion_tokens"] > 0 and llm["cost"] > 0
    assert llm["limiter_waits"] > 0 and llm["limiter_wait_seconds"] > 0
    from piano_dist.demo.table import render

    text = render(report)
    assert "LLM tokens" in text and "LLM cost" in text and "LLM limiter waits" in text
    # Calls made in the modules' own thread pools count for their task's module and agent.
    cluster = _cli_json(redis_url)
    assert "-" not in cluster["modules"] and "-" not in cluster["agents"]
    assert {m.split(".")[0] for m in cluster["modules"]} <= {"plan", "reflect"}
    assert set(cluster["agents"]) <= {"agent01", "agent02", "agent03", "agent04"}


@pytest.mark.slow
def test_replaying_a_seeded_demo_against_the_cache_makes_no_endpoint_calls(redis_url, redis_client):
    stub = StubEndpoint().start()
    env = _env(stub, cache=1)
    try:
        # One slot: the run is deterministic, so its prompts repeat exactly.
        first = _demo(redis_url, env, agents=4, ticks=2, workers=1, concurrency=1, seed=7)
        calls = stub.log.count(200)
        # Start the agents afresh, keeping only the cache.
        for key in redis_client.scan_iter():
            if b":llm:cache:" not in key:
                redis_client.delete(key)
        replay = _demo(redis_url, env, agents=4, ticks=2, workers=1, concurrency=1, seed=7)
    finally:
        stub.stop()
    assert first["tasks_by_status"] == replay["tasks_by_status"] == {"completed": 40}
    assert calls > 0 and stub.log.count(200) == calls  # the replay asked the endpoint nothing
    assert replay["llm"]["calls"] == first["llm"]["calls"] == replay["llm"]["cache_hits"]
