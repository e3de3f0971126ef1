"""The one retry policy (piano_dist.retry_policy) against a real redis-server: what is
retried (lost connections, BUSY, LOADING, OOM, READONLY, TRYAGAIN, MASTERDOWN), what is
not (wrong password, ordinary error replies, one reply of a pipeline), the deadline, and
workers that neither exit on BUSY nor drop an outcome refused with OOM."""
import logging
import threading
import time

import pytest
import redis
from redis._parsers.base import BaseParser
from support.failure_procs import Workers
from support.redis_server import RedisServer
from support.waiting import wait_until

from piano_dist import ConcurrentModuleManager, TaskSpec
from piano_dist.connection import client_for_url
from piano_dist.retry_policy import RedisRetry, is_transient, transient_reply

BUSY_SCRIPT = ("local t = redis.call('TIME') local stop = tonumber(t[1]) * 1e6 + tonumber(t[2]) + ARGV[1] * 1e6 "
               "while true do local n = redis.call('TIME') "
               "if tonumber(n[1]) * 1e6 + tonumber(n[2]) > stop then return 1 end end")


def reply(text: str) -> Exception:
    return BaseParser.parse_error(text)


@pytest.mark.parametrize("text", [
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
    "LOADING Redis is loading the dataset in memory",
    "OOM command not allowed when used memory > 'maxmemory'.",
    "READONLY You can't write against a read only replica.",
    "TRYAGAIN Multiple keys request during rehashing of slot",
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
    # Redis 6 / 7.0 wrap what a script's redis.call() got; Redis refuses only a script's
    # first write, so such a script changed nothing.
    "ERR Error running script (call to f_0a): @user_script:1: @user_script: 1: -OOM command not allowed "
    "when used memory > 'maxmemory'.",
])
def test_replies_redis_gives_without_running_the_command_are_transient(text):
    assert is_transient(reply(text)), text


@pytest.mark.parametrize("text", [
    "BUSYKEY Target key name already exists.",
    "WRONGTYPE Operation against a key holding the wrong kind of value",
    "NOSCRIPT No matching script. Please use EVAL.",
    "ERR unknown command 'FOO'",
    "WRONGPASS invalid username-password pair or user is disabled.",
    "NOAUTH Authentication required.",
    "NOPERM this user has no permissions to run the 'set' command",
    "ERR Error running script (call to f_0a): @user_script:3: user_script:3: FENCED piano:res:x",
])
def test_other_replies_are_not_retried(text):
    assert not is_transient(reply(text)), text


def test_a_reply_inside_a_pipeline_is_not_retried_by_the_client():
    # Retrying it would re-send every command of the pipeline.
    error = reply("OOM command not allowed when used memory > 'maxmemory'.")
    error.args = (f"Command # 2 (SET k v) of pipeline caused error: {error.args[0]}",)
    assert transient_reply(error) is None


@pytest.fixture
def server():
    s = RedisServer().start()
    yield s
    s.close()


def _errors(admin: redis.Redis, code: str) -> int:
    return int(admin.info("errorstats").get(f"errorstat_{code}", {}).get("count", 0))


def _failed_scripts(admin: redis.Redis) -> int:
    return int(admin.info("commandstats").get("cmdstat_evalsha", {}).get("failed_calls", 0))


def _after(condition, action) -> threading.Thread:
    """Run ``action`` once ``condition`` holds (checked every 20 ms, for up to 20 s)."""
    def run():
        wait_until(condition, timeout=20, message="the fault to be seen")
        action()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _start_busy_script(server, seconds: float) -> threading.Thread:
    """Run a script for ``seconds`` and return once Redis answers BUSY to others."""
    server.client().config_set("lua-time-limit", 50)
    busy = threading.Thread(target=lambda: server.client().eval(BUSY_SCRIPT, 0, seconds), daemon=True)
    busy.start()
    probe = redis.Redis(port=server.port, retry=None)

    def answering_busy():
        try:
            probe.ping()
        except redis.ResponseError as exc:
            return str(exc).startswith("BUSY")
        return False

    wait_until(answering_busy, message="Redis answering BUSY")
    return busy


def test_a_call_waits_out_a_busy_script(server):
    busy = _start_busy_script(server, 1.5)
    try:
        assert client_for_url(server.url).set("after-busy", 1)
    finally:
        busy.join()
    assert _errors(server.client(), "BUSY") >= 2  # the probe's, and at least one refused attempt


def test_a_write_waits_out_oom_and_readonly_and_then_applies_once(server):
    admin = server.client()
    client = client_for_url(server.url)
    for code, fault, cure in (
            ("OOM", lambda: admin.config_set("maxmemory", 1), lambda: admin.config_set("maxmemory", 0)),
            ("READONLY", lambda: admin.replicaof("127.0.0.1", 1), lambda: admin.replicaof("NO", "ONE"))):
        fault()
        seen = _errors(admin, code)
        cure_thread = _after(lambda: _errors(admin, code) >= seen + 2, cure)
        assert client.incr(f"counter-{code}") == 1
        cure_thread.join()


def test_a_call_rides_out_a_redis_restart(server, caplog):
    client = client_for_url(server.url)
    client.set("k", "v")
    server.kill()
    retrying = threading.Event()

    class Seen(logging.Handler):
        def emit(self, record):
            if "retrying" in record.getMessage():
                retrying.set()

    handler = Seen()
    logging.getLogger("piano_dist.redis").addHandler(handler)
    try:
        restart = threading.Thread(target=lambda: (retrying.wait(20), server.start()), daemon=True)
        restart.start()
        assert client.incr("after-restart") == 1
        restart.join()
    finally:
        logging.getLogger("piano_dist.redis").removeHandler(handler)
    assert retrying.is_set()


def test_a_call_gives_up_at_the_deadline(server, monkeypatch):
    monkeypatch.setenv("PIANO_REDIS_RETRY_SECONDS", "0.5")
    client = client_for_url(server.url)
    policy = client.connection_pool.connection_kwargs["retry"]
    assert isinstance(policy, RedisRetry) and policy.deadline == 0.5
    server.kill()
    with pytest.raises(redis.ConnectionError):
        client.ping()
    attempts, failures = [], []

    def down():
        attempts.append(1)
        raise redis.ConnectionError("refused")

    with pytest.raises(redis.ConnectionError):
        RedisRetry(deadline=0.5).call_with_retry(down, failures.append)
    assert len(attempts) > 1 and len(failures) == len(attempts)  # retried, each failure handled


def test_the_deadline_setting_is_checked(monkeypatch):
    monkeypatch.setenv("PIANO_REDIS_RETRY_SECONDS", "soon")
    with pytest.raises(ValueError, match="PIANO_REDIS_RETRY_SECONDS"):
        RedisRetry()


def test_a_wrong_password_is_not_retried(server):
    protected = RedisServer(password="right").start()
    try:
        admin = protected.client()
        before = int(admin.info("stats")["total_connections_received"])
        with pytest.raises(redis.AuthenticationError):
            client_for_url(protected.url.replace(":right@", ":wrong@")).ping()
        assert int(admin.info("stats")["total_connections_received"]) - before == 1
    finally:
        protected.close()


def test_an_ordinary_error_reply_keeps_the_connection_and_is_not_repeated(server):
    client = client_for_url(server.url)
    client.set("s", "text")
    admin = server.client()
    before = int(admin.info("stats")["total_connections_received"])
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        client.lpush("s", 1)
    client.ping()
    assert int(admin.info("stats")["total_connections_received"]) == before
    assert _errors(admin, "WRONGTYPE") == 1


def test_a_pipeline_with_a_refused_command_is_not_sent_twice(server):
    client = client_for_url(server.url)
    client.rpush("items", "a", "b", "c")
    admin = server.client()
    admin.config_set("maxmemory", 1)
    try:
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            with client.pipeline(transaction=False) as pipe:
                pipe.lpop("items")        # not refused under OOM, not idempotent
                pipe.set("blocked", 1)    # refused
                pipe.execute()
    finally:
        admin.config_set("maxmemory", 0)
    assert client.llen("items") == 2


# --- workers -----------------------------------------------------------------------------

@pytest.fixture
def faulty(monkeypatch):
    s = RedisServer().start()
    monkeypatch.setenv("PIANO_REDIS_URL", s.url)
    manager = ConcurrentModuleManager(max_workers=0, redis_url=s.url, max_queue_size=0)
    yield s, manager
    manager.shutdown()
    s.close()


def test_a_worker_does_not_exit_on_busy_even_past_the_retry_deadline(faulty):
    # The worker's policy gives up after 0.3 s, so claims, renewals and finishes during the
    # 3 s script fail outright: the worker must say so and carry on, not exit.
    server, manager = faulty
    from support.failure_modules import RunLog

    manager.register_module("log", RunLog())
    admin = server.client()
    with Workers(server.url) as workers:
        worker = workers.start(concurrency=1, log_level="WARNING",
                               env={"PIANO_REDIS_RETRY_SECONDS": "0.3", "PIANO_LEASE_SECONDS": "10"})
        ids = manager.submit_many([TaskSpec("log", "run", args=(f"b{i}",), kwargs={"sleep": 1.0}, task_id=f"b{i}")
                                   for i in range(3)])
        wait_until(lambda: admin.llen("test:runs") >= 1, timeout=30, message="the first task started")
        busy = _start_busy_script(server, 3.0)
        busy.join()
        statuses = manager.wait(ids, timeout=60)
        assert worker.alive(), worker.log()
    assert {st["status"] for st in statuses.values()} == {"completed"}
    assert sorted(e.decode().split("|")[0] for e in admin.lrange("test:runs", 0, -1)) == ids  # each ran once
    assert _errors(admin, "BUSY") >= 2  # the worker was refused too


def test_an_outcome_refused_with_oom_is_recorded_once_redis_accepts_it(faulty):
    server, manager = faulty
    from support.redis_fault_modules import RedisUser

    manager.register_module("user", RedisUser())
    admin = server.client()
    with Workers(server.url) as workers:
        worker = workers.start(concurrency=1, log_level="WARNING", env={"PIANO_LEASE_SECONDS": "10"})
        wait_until(lambda: admin.exists(f"rq:worker:{worker.name}"), timeout=30, message="the worker registered")
        def cure_once_refused():
            # The task sets maxmemory and returns, so its finish is refused at once. A
            # script refused under OOM counts as a failed EVALSHA (Redis wraps the refusal).
            wait_until(lambda: admin.config_get("maxmemory")["maxmemory"] == "1", timeout=30,
                       message="the task filled memory")
            seen = _failed_scripts(admin)
            wait_until(lambda: _failed_scripts(admin) >= seen + 2, timeout=30, message="the finish refused")
            admin.config_set("maxmemory", 0)

        cure = threading.Thread(target=cure_once_refused, daemon=True)
        cure.start()
        task = manager.submit_task("user", "fill_memory_then_return", args=("oom",))
        cure.join()
        status = manager.client.wait([task], timeout=30)[task]
        assert worker.alive()
    assert status["status"] == "completed" and status["result"] == "oom"
    assert status["attempts"] == 1
    assert admin.lrange("test:runs", 0, -1) == [b"oom|1"]  # ran once: the outcome was not dropped


@pytest.mark.slow
def test_module_code_and_the_client_ride_out_a_redis_restart(monkeypatch):
    """Tasks whose module code calls Redis throughout, a client waiting on them, and
    Redis SIGKILLed and back (AOF) 3 s later: every task completes."""
    server = RedisServer(appendonly=True).start()
    monkeypatch.setenv("PIANO_REDIS_URL", server.url)
    from support.redis_fault_modules import RedisUser

    manager = ConcurrentModuleManager(max_workers=0, redis_url=server.url, max_queue_size=0)
    admin = server.client()
    try:
        manager.register_module("user", RedisUser())
        with Workers(server.url) as workers:
            for _ in range(2):
                workers.start(concurrency=4, log_level="WARNING", env={"PIANO_LEASE_SECONDS": "10"})
            ids = manager.submit_many([TaskSpec("user", "count", args=(f"c{i:02d}", 10, 0.05), task_id=f"c{i:02d}")
                                       for i in range(40)])
            wait_until(lambda: admin.llen("test:runs") >= 8, timeout=60, message="8 tasks done")
            server.kill()
            time.sleep(3)  # the outage under test
            server.start()
            statuses = manager.wait(ids, timeout=120)
            assert all(w.alive() for w in workers.started)
    finally:
        manager.shutdown()
        server.close()
    assert {st["status"] for st in statuses.values()} == {"completed"}, {
        t: (st["status"], st.get("error")) for t, st in statuses.items() if st["status"] != "completed"}


def test_one_policy_object_shared_by_threads_keeps_each_calls_deadline():
    # redis-py's set_retry hands one object to every connection of a pool.
    policy = RedisRetry(deadline=5)
    copy_of = __import__("copy").deepcopy(policy)
    assert isinstance(copy_of, RedisRetry) and copy_of is not policy and copy_of.deadline == 5
    barrier = threading.Barrier(2)
    results, errors = [], []

    def call(label):
        attempts = []

        def flaky():
            attempts.append(1)
            if len(attempts) == 1:
                barrier.wait(timeout=10)  # both calls are inside the policy at once
            if len(attempts) < 3:
                raise redis.ConnectionError("refused")
            return label

        try:
            results.append(policy.call_with_retry(flaky, lambda error: None))
        except Exception as exc:  # a deadline shared across threads would surface here
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors and sorted(results) == ["a", "b"]


def test_a_worker_given_rqs_client_adopts_the_policy(redis_url):
    from piano_dist.workers.piano_worker import PianoWorker

    client = redis.Redis.from_url(redis_url)  # as `rq worker -w …` builds it
    worker = PianoWorker(connection=client, concurrency=1)
    assert isinstance(client.connection_pool.connection_kwargs["retry"], RedisRetry)
    assert worker.connection is client and client.ping()
