"""A command whose reply is lost ran in Redis, and the retry policy sends it again. The
calls that must not apply twice recognise their own repeat: submit (a submission token
in the task's hash), lock acquire (the request finds its own grant), task finish (a
finish for a run that no longer owns the task is refused)."""
import pytest
from support.failure_modules import RunLog
from support.redis_server import RedisServer
from support.tcp_proxy import TcpProxy
from support.waiting import wait_until
from support.workers import WorkerProcess

from piano_dist import ConcurrentModuleManager, ResourceCoordinator, ResourceType, TaskSpec
from piano_dist.connection import client_for_url


@pytest.fixture
def proxied(monkeypatch):
    server = RedisServer().start()
    proxy = TcpProxy(server.port)
    monkeypatch.setenv("PIANO_REDIS_URL", server.url)
    yield server, proxy, client_for_url(proxy.url())
    proxy.close()
    server.stop()


def _sha(client, name):
    from piano_dist.scripts import ScriptSet

    script = getattr(ScriptSet(client), name)
    client.script_load(script.script)  # loaded: the lost reply is the script's own, not NOSCRIPT
    return script.sha.encode()


def test_a_submit_whose_reply_was_lost_is_not_refused_as_a_duplicate(proxied):
    server, proxy, client = proxied
    direct = server.client()
    manager = ConcurrentModuleManager(max_workers=0, connection=client, max_queue_size=0)
    manager.register_module("log", RunLog())
    proxy.lose_reply_to(_sha(client, "task_submit_many"))
    one = manager.submit_task("log", "run", args=("one",))
    assert proxy.lost.is_set()
    proxy.lose_reply_to(_sha(client, "task_submit_many"))
    many = manager.submit_many([TaskSpec("log", "run", args=(f"m{i}",), task_id=f"m{i}") for i in range(3)])
    assert proxy.lost.is_set()
    assert many == ["m0", "m1", "m2"]
    ids = [one, *many]
    # Each stored once: queued once, counted once.
    assert direct.lrange("rq:queue:piano.normal", 0, -1) == [i.encode() for i in ids]
    assert int(direct.hget("piano:stats", "backlog")) == len(ids)
    worker = WorkerProcess(server.url, concurrency=2)
    try:
        statuses = manager.wait(ids, timeout=60)
    finally:
        worker.stop()
        manager.shutdown()
    assert {st["status"] for st in statuses.values()} == {"completed"}
    assert sorted(e.decode().split("|")[0] for e in direct.lrange("test:runs", 0, -1)) == sorted(
        ["one", "m0", "m1", "m2"])


def test_a_real_duplicate_id_is_still_refused(proxied):
    server, proxy, client = proxied
    manager = ConcurrentModuleManager(max_workers=0, connection=client, max_queue_size=0)
    try:
        manager.register_module("log", RunLog())
        manager.submit_many([TaskSpec("log", "run", args=("x",), task_id="same")])
        with pytest.raises(ValueError, match="already exists"):
            manager.submit_many([TaskSpec("log", "run", args=("x",), task_id="same")])
    finally:
        manager.shutdown()


def test_a_lock_whose_grant_reply_was_lost_is_granted_once(proxied):
    server, proxy, client = proxied
    coordinator = ResourceCoordinator(connection=client, default_timeout=5)
    other = ResourceCoordinator(connection=server.client(), default_timeout=0)
    try:
        coordinator.register_resource("world", None, ResourceType.AGENT_STATE)
        proxy.lose_reply_to(_sha(client, "lock_acquire"))
        lock_id = coordinator.acquire_resource("world", "write", "mover")
        assert proxy.lost.is_set() and lock_id is not None
        status = coordinator.get_resource_status("world")
        assert status["active_locks"] == 1 and status["writer"] == "mover", status
        assert status["fence"] == 1  # granted once: the repeat found its grant
        assert other.acquire_resource("world", "write", "intruder", timeout=0) is None
        assert coordinator.release_resource(lock_id)
        granted = other.acquire_resource("world", "write", "next", timeout=0)
        assert granted is not None
        other.release_resource(granted)
    finally:
        coordinator.shutdown()
        other.shutdown()


def test_a_finish_repeated_after_its_reply_was_lost_is_refused_and_counted_once(proxied):
    server, proxy, client = proxied
    direct = server.client()
    manager = ConcurrentModuleManager(max_workers=0, connection=direct, max_queue_size=0)
    manager.register_module("log", RunLog())
    # The worker talks to Redis through the proxy; the reply to its first finish is lost.
    proxy.lose_reply_to(_sha(direct, "task_finish"))
    worker = WorkerProcess(proxy.url(), concurrency=1)
    try:
        task = manager.submit_task("log", "run", args=("f",))
        status = manager.wait([task], timeout=60)[task]
        wait_until(proxy.lost.is_set, timeout=30, message="the finish reply lost")
        assert worker.alive()
    finally:
        worker.stop()
        manager.shutdown()
    assert status["status"] == "completed" and status["attempts"] == 1
    assert direct.xlen(f"rq:results:{task}") == 1
    assert int(direct.hget("piano:stats", "completed")) == 1
    assert direct.lrange("test:runs", 0, -1)[0].decode().startswith("f|")
    assert direct.llen("test:runs") == 1


def test_a_compare_and_set_write_whose_reply_was_lost_is_not_reported_as_a_conflict(proxied):
    from piano_dist.state import RedisAgentState

    server, proxy, client = proxied
    state = RedisAgentState("ana", connection=client)
    state.set("mood", "calm")
    version = state.path_version("mood")
    proxy.lose_reply_to(_sha(client, "state_apply"))
    new_version = state.set("mood", "glad", expected_version=version)
    assert proxy.lost.is_set()
    assert state.get("mood") == "glad" and new_version == state.path_version("mood") == version + 1


def test_a_repeated_submit_stores_nothing_again_even_a_task_that_ended_and_left_no_record(redis_url, redis_client):
    """The repeat of a submit call (its reply lost, the call sent again) is answered from
    the first run's reply: a task with a result TTL of 0 that ended in between has no
    record left to recognise, and would otherwise be stored and run a second time."""
    from piano_dist.core.task_spec import BatchCache

    manager = ConcurrentModuleManager(max_workers=0, max_queue_size=0)
    try:
        manager.register_module("log", RunLog())
        client = manager.client
        specs = [TaskSpec("log", "run", args=("a",), task_id="rep-a", result_ttl=0),
                 TaskSpec("log", "run", args=("b",), task_id="rep-b", result_ttl=0, dependencies=["rep-a"])]
        cache = BatchCache()
        prepared = [client.encoder.prepare(TaskSpec.coerce(s, i), cache) for i, s in enumerate(specs)]
        args = client.tasks.submit_args(prepared, 0, "repeat-token")
        first = client.tasks.scripts.task_submit_many(args=args)
        assert client.cancel_many(["rep-a"], "ended before the repeat") == ["cancelled"]
        wait_until(lambda: not redis_client.exists("rq:job:rep-a", "rq:job:rep-b"), timeout=5,
                   message="both records to go (TTL 0; rep-b ends dependency_failed)")
        submitted = int(redis_client.hget("piano:stats", "submitted"))
        assert client.tasks.scripts.task_submit_many(args=args) == first == []
        assert not redis_client.exists("rq:job:rep-a", "rq:job:rep-b")
        assert redis_client.llen("rq:queue:piano.normal") == 0
        assert int(redis_client.hget("piano:stats", "submitted")) == submitted
        # The answer is kept as long as a call may be sent again, and no longer.
        assert 0 < redis_client.ttl("piano:submitted:repeat-token:rep-a") <= 35
    finally:
        manager.shutdown()
