"""Fault paths of the worker (issue 12): whatever a task, its module or Redis does, the
task ends in a definite status, its slot serves the next task, and the worker stays
quiet and responsive."""
from __future__ import annotations

import signal
import time

import redis

from support.waiting import wait_until
from support.workers import WorkerProcess


def _idle(redis_client, name: str) -> bool:
    return redis_client.hget(f"rq:worker:{name}", "state") == b"idle"


def test_stopping_the_command_listener_survives_a_slow_main_thread(redis_url, monkeypatch):
    """RQ sent UNSUBSCRIBE and only then stopped its listener thread. If the main thread
    is held up in between (likely on one CPU), the listener reads the reply, loops, and
    waits 60 s for a subscription; redis-py 8's stop() joins it without a timeout. The
    delay after UNSUBSCRIBE below is that hold-up, made certain."""
    import threading

    from redis.client import PubSub

    from piano_dist.workers.piano_worker import PianoWorker

    worker = PianoWorker(connection=redis.Redis.from_url(redis_url), name="listener-test")
    worker.subscribe()
    wait_until(lambda: worker.pubsub.subscribed, timeout=10, message="the listener to subscribe")
    original = PubSub.unsubscribe

    def slow_unsubscribe(self, *args):
        result = original(self, *args)
        time.sleep(0.5)  # the main thread loses the CPU right after sending UNSUBSCRIBE
        return result

    monkeypatch.setattr(PubSub, "unsubscribe", slow_unsubscribe)
    stopper = threading.Thread(target=worker.unsubscribe, daemon=True)
    stopper.start()
    stopper.join(timeout=8)
    assert not stopper.is_alive(), "stopping the command listener hung"


def test_idle_worker_pinned_to_one_cpu_stops_at_once_on_sigterm(redis_url, redis_client):
    """End to end: an idle worker pinned to one CPU (as in a one-CPU container) exits on
    SIGTERM without sitting out its listener's wait."""
    for i in range(3):
        worker = WorkerProcess(redis_url, concurrency=2, name=f"idle-{i}", cpus={0})
        try:
            wait_until(lambda: _idle(redis_client, worker.name), timeout=20, message="the worker to be idle")
            worker.signal(signal.SIGTERM)
            assert worker.wait(timeout=10) == 0
        finally:
            worker.stop()


# --- what a task, its module or its record can do (12.3, 12.7) ---------------------------
import json  # noqa: E402
import re  # noqa: E402
from datetime import datetime, timedelta  # noqa: E402

import pytest  # noqa: E402
from support.failure_procs import LoggedWorker  # noqa: E402
from support.sample_modules import Echo  # noqa: E402
from support.trust_modules import Aborting, Guarded, Results  # noqa: E402

from piano_dist import BaseModule, ConcurrentModuleManager, current_task  # noqa: E402


def _register_raw(redis_client, name: str, class_path: str, methods=("run",)) -> None:
    redis_client.hset("piano:modules", name, json.dumps({"class": class_path, "config": {},
                                                         "methods": list(methods), "agent_id": None}))


@pytest.fixture
def manager(redis_url):
    m = ConcurrentModuleManager(max_workers=0, max_queue_size=0, redis_url=redis_url)
    yield m
    m.shutdown()


def test_base_exceptions_and_broken_registrations_end_the_task_failed_and_free_the_slot(manager, redis_url,
                                                                                         redis_client):
    manager.register_module("aborting", Aborting())
    manager.register_module("echo", Echo())
    manager.register_module("corrupt", Echo())
    _register_raw(redis_client, "ctor", "support.trust_modules:AbortingConstructor")
    bad = {name: manager.submit_task("aborting", name) for name in ("exit", "interrupt", "base")}
    bad["ctor"] = manager.submit_task("ctor", "run")
    bad["corrupt"] = manager.submit_task("corrupt", "add", args=(1, 2))
    redis_client.hset("piano:modules", "corrupt", "{not json")
    good = manager.submit_task("echo", "add", args=(2, 2))
    # One slot: a task that kept its slot would block every task after it.
    worker = WorkerProcess(redis_url, concurrency=1, name="one-slot")
    try:
        final = manager.wait([*bad.values(), good], timeout=30)
    finally:
        worker.stop()
    expected = {"exit": "SystemExit: 3", "interrupt": "KeyboardInterrupt", "base": "GeneratorExit",
                "ctor": "SystemExit: refusing to be built", "corrupt": "not valid JSON"}
    for name, tid in bad.items():
        assert final[tid]["status"] == "failed", (name, final[tid])
        assert expected[name] in final[tid]["error"], (name, final[tid]["error"])
    assert final[good]["status"] == "completed" and final[good]["result"] == 4
    assert redis_client.zcard("piano:running") == 0


def test_a_corrupt_task_record_ends_failed_not_the_worker(manager, redis_url, redis_client):
    manager.register_module("echo", Echo())
    broken = {
        "payload": ("piano_payload", "[1, 2"),
        "shape": ("piano_payload", '{"args": []}'),
        "timeout": ("piano_timeout", "nan"),
    }
    ids = {}
    for name, (field, value) in broken.items():
        ids[name] = manager.submit_task("echo", "add", args=(1, 1))
        redis_client.hset(f"rq:job:{ids[name]}", field, value)
    good = manager.submit_task("echo", "add", args=(3, 4))
    worker = WorkerProcess(redis_url, concurrency=1, name="reader")
    try:
        final = manager.wait([*ids.values(), good], timeout=30)
    finally:
        worker.stop()
    for name, tid in ids.items():
        assert final[tid]["status"] == "failed" and "record is corrupt" in final[tid]["error"], (name, final[tid])
    assert final[good]["result"] == 7


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_results_are_validated_like_arguments(redis_url, isolation):
    manager = ConcurrentModuleManager(max_workers=0, redis_url=redis_url)
    worker = WorkerProcess(redis_url, concurrency=2, name=f"results-{isolation}",
                           env={"PIANO_ISOLATION": isolation})
    try:
        manager.register_module("results", Results())
        ids = {m: manager.submit_task("results", m) for m in ("nan", "int_keys", "huge", "fine")}
        final = manager.wait(list(ids.values()), timeout=30)
    finally:
        worker.stop()
        manager.shutdown()
    assert final[ids["fine"]]["status"] == "completed"
    assert final[ids["fine"]]["result"] == {"ok": [1, 2.5, None, "text"]}
    for method, words in {"nan": "only finite numbers", "int_keys": "non-string key 1",
                          "huge": "the limit is 1000000"}.items():
        st = final[ids[method]]
        assert st["status"] == "failed" and "result" in st["error"] and words in st["error"], (method, st)


# --- tasks that cannot start here: parked, quiet, never blocking (12.4, 12.5, 14.8) ----
def _script_calls(redis_client) -> int:
    stats = redis_client.info("commandstats")
    return sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("evalsha", "eval"))


def test_tasks_of_a_deleted_registration_wait_quietly(manager, redis_url, redis_client):
    manager.register_module("gone", Guarded())
    manager.register_module("echo", Echo())
    ids = [manager.submit_task("gone", "run", args=(f"g{i}",)) for i in range(3)]
    redis_client.hdel("piano:modules", "gone")
    worker = LoggedWorker(redis_url, concurrency=4, name="quiet")
    try:
        for tid in ids:
            st = wait_until(lambda: (s := manager.get_task_status(tid)) and "waiting_because" in s and s,
                            timeout=20, message="the task to be set aside")
            assert st["status"] == "queued" and "not registered" in st["waiting_because"], st
        before = _script_calls(redis_client)
        time.sleep(3)  # the behaviour under test: what an idle worker does with them over time
        calls = _script_calls(redis_client) - before
        assert calls < 60, f"{calls} script calls in 3 s by a worker with nothing it can run"
        assert worker.log().count("cannot load module") <= 1
        assert manager.get_result(manager.submit_task("echo", "add", args=(1, 2)), timeout=20) == 3
    finally:
        worker.stop()
    assert all(manager.get_task_status(t)["status"] == "queued" for t in ids)


class FailsFirst(BaseModule):
    """Its first attempt says it started, waits for the test's go-ahead, then fails;
    later ones succeed."""

    def run(self, key="test:go"):
        import redis as _redis_lib
        import os as _os

        if current_task().attempt == 1:
            client = _redis_lib.Redis.from_url(_os.environ["PIANO_REDIS_URL"])
            client.rpush("test:started", "1")
            client.blpop([key], timeout=20)
            raise RuntimeError("first attempt fails")
        return "second attempt"


def test_a_task_retried_after_its_module_was_unregistered_waits_until_registered_again(redis_url,
                                                                                         redis_client):
    owner = ConcurrentModuleManager(max_workers=1, redis_url=redis_url)
    try:
        owner.register_module("flaky", FailsFirst())
        tid = owner.submit_task("flaky", "run", retries=1)
        # Its code, not only its claim: a task is `running` from the claim on, and a module
        # unregistered before the worker has built it is one that worker cannot load.
        wait_until(lambda: redis_client.llen("test:started"), timeout=20, message="its first attempt to start")
        owner.unregister_module("flaky")
        redis_client.rpush("test:go", "1")
        st = wait_until(lambda: (s := owner.get_task_status(tid)) and "waiting_because" in s and s,
                        timeout=20, message="the retry to wait")
        assert st["status"] == "queued" and "not registered" in st["waiting_because"], st
        before = _script_calls(redis_client)
        time.sleep(2)  # the behaviour under test: it waits without being claimed over and over
        assert _script_calls(redis_client) - before < 40
        owner.register_module("flaky", FailsFirst())
        assert owner.get_result(tid, timeout=20) == "second attempt"
    finally:
        owner.shutdown()


def test_150_tasks_a_worker_cannot_load_do_not_delay_one_it_can(manager, redis_url, redis_client):
    manager.register_module("echo", Echo())
    _register_raw(redis_client, "canary", "support.trust_canary:Canary")
    blocked = manager.submit_many([{"module_name": "canary"} for _ in range(150)])
    behind = manager.submit_task("echo", "add", args=(40, 2))
    worker = WorkerProcess(redis_url, concurrency=2, name="picky", env={"PIANO_ALLOWED_MODULES": "support.sample_modules"})
    try:
        assert manager.get_result(behind, timeout=20) == 42
    finally:
        worker.stop()
    statuses = manager.client.get_statuses(blocked)
    assert all(s["status"] == "queued" and "allow" in s["waiting_because"] for s in statuses.values())
    assert redis_client.llen("rq:queue:piano.normal") == 0
    assert redis_client.llen("piano:parked:piano.normal:canary") == 150


def _stamp(line: str) -> datetime | None:
    m = re.match(r"(\d\d):(\d\d):(\d\d) ", line)
    return datetime(2000, 1, 1, *map(int, m.groups())) if m else None


def test_cannot_load_lines_are_rate_limited(manager, redis_url, redis_client):
    manager.register_module("echo", Echo())
    specs = []
    for i in range(30):
        _register_raw(redis_client, f"missing{i}", f"support.no_such_module_{i}:Missing")
        specs += [{"module_name": f"missing{i}"}] * 2
    ids = manager.submit_many(specs)
    worker = LoggedWorker(redis_url, concurrency=2, name="chatty", log_level="INFO")
    try:
        wait_until(lambda: all("waiting_because" in s for s in manager.client.get_statuses(ids).values()),
                   timeout=30, message="every task to be set aside")
        assert manager.get_result(manager.submit_task("echo", "add", args=(1, 1)), timeout=20) == 2
        lines = [line for line in worker.log().splitlines() if "cannot load module" in line]
    finally:
        worker.stop()
    stamps = [_stamp(line) for line in lines]
    assert lines and all(stamps), lines
    for start in stamps:
        window = [t for t in stamps if start <= t < start + timedelta(seconds=5)]
        assert len(window) <= 10, lines
    by_module = [re.search(r"cannot load module (\S+):", line).group(1) for line in lines]
    assert len(by_module) == len(set(by_module)), "a module's line was repeated within a minute"


# --- retries and lost runs (12.18) -------------------------------------------------------
def test_ordinary_retries_do_not_count_toward_max_attempts(manager, redis_url, redis_client):
    from support.failure_procs import Workers
    from support.trust_modules import RaisesThenKills

    manager.register_module("rtk", RaisesThenKills())
    tid = manager.submit_task("rtk", "run", retries=3, max_attempts=2)
    with Workers(redis_url) as workers:
        for _ in range(2):
            workers.start(concurrency=1, log_level="WARNING")
        st = manager.wait([tid], timeout=40)[tid]
    # Three ordinary failures (its retries), one run lost with its worker (1 of max 2), then done.
    assert st["status"] == "completed" and st["result"] == 5, st
    assert [int(a) for a in redis_client.lrange("test:raises-then-kills", 0, -1)] == [1, 2, 3, 4, 5]


def test_a_module_registered_locally_after_a_failed_load_is_started_at_once(redis_url, redis_client):
    """A manager's slots start before its register_module calls; a task they could not
    load a moment ago must not be skipped for the retry interval once the module is local."""
    from piano_dist.core.loader import ModuleLoader
    from piano_dist.core.registry import ModuleRegistry
    from piano_dist.keys import Keys

    _register_raw(redis_client, "later", "support.trust_canary:Canary")
    local: dict = {}
    loader = ModuleLoader(ModuleRegistry(redis_client, Keys()), local=local)
    with pytest.raises(Exception):
        loader.get("later")
    assert "later" in loader.unloadable()
    local["later"] = Echo()
    assert "later" not in loader.unloadable()
    assert loader.get("later") is local["later"]


def test_a_worker_started_while_redis_is_busy_waits_instead_of_exiting():
    """BUSY (a long script) or LOADING (an AOF being read after a restart) at start-up
    is Redis answering: the worker waits it out like any other call."""
    import threading

    from support.redis_server import RedisServer

    server = RedisServer().start()  # its own: the BUSY threshold below must not leak
    admin = redis.Redis.from_url(server.url)
    admin.config_set("lua-time-limit", 100)
    spinner = redis.Redis.from_url(server.url, socket_timeout=60)
    thread = threading.Thread(target=lambda: _ignore(spinner.eval, "while true do end", 0), daemon=True)
    thread.start()
    wait_until(lambda: _is_busy(admin), timeout=10, message="Redis to be busy")
    worker = WorkerProcess(server.url, concurrency=1, name="patient")
    try:
        time.sleep(2)  # the behaviour under test: starting while every reply is BUSY
        assert worker.alive(), worker.stderr_text()
        wait_until(lambda: _killed(admin), timeout=10, message="SCRIPT KILL")
        wait_until(lambda: not _is_busy(admin), timeout=10, message="the script to end")
        wait_until(lambda: admin.exists("rq:worker:patient"), timeout=30, message="the worker to register")
    finally:
        _killed(admin)
        worker.stop()
        thread.join(timeout=10)
        server.close()


def _ignore(fn, *args):
    try:
        fn(*args)
    except redis.RedisError:
        pass


def _is_busy(admin) -> bool:
    try:
        admin.ping()
        return False
    except redis.ResponseError as exc:
        return "BUSY" in str(exc)


def _killed(admin) -> bool:
    try:
        admin.script_kill()
        return True
    except redis.ResponseError as exc:
        return "NOTBUSY" in str(exc)
