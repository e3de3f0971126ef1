"""The acquire/release fast path: its connection lane (which every ScriptSet call shares)
and the uncontended Lua paths."""
from __future__ import annotations

import multiprocessing as mp

import pytest
import redis

from piano_dist.resources import AccessMode, ResourceCoordinator, ResourceType

W, R = AccessMode.WRITE, AccessMode.READ


@pytest.fixture
def coord(redis_url):
    c = ResourceCoordinator(10, 2.0, connection=redis.Redis.from_url(redis_url), lease=1.0)
    c.register_resource("mem", None, ResourceType.EPISODIC_MEMORY)
    yield c
    c.shutdown()


def test_grant_records_type_fence_and_status(coord):
    lock_id = coord.acquire_resource("mem", W, "w", timeout=0)
    held = coord.get_held_locks()[0]
    assert held.resource_type is ResourceType.EPISODIC_MEMORY and held.fence == 1
    status = coord.get_resource_status("mem")
    assert status["writer"] == "w" and status["locks"][0]["lock_id"] == lock_id
    assert status["locks"][0]["fence"] == 1 and status["fence"] == 1
    assert coord.connection.hget(coord.keys.lock_index, lock_id) == coord.keys.resource_base("mem").encode()
    assert coord.release_resource(lock_id) is True
    # nothing of the lock is left behind, but the fence stays
    assert coord.connection.keys(coord.keys.resource_base("mem") + "*") == [
        coord.keys.resource_fence("mem").encode()]
    assert coord.connection.hlen(coord.keys.lock_index) == 0


def test_scripts_flushed_by_redis_are_loaded_again(coord):
    coord.release_resource(coord.acquire_resource("mem", W, "w", timeout=0))
    coord.connection.script_flush()
    lock_id = coord.acquire_resource("mem", W, "w", timeout=0)
    coord.connection.script_flush()
    assert coord.release_resource(lock_id) is True


def test_killed_connections_are_replaced(coord):
    coord.release_resource(coord.acquire_resource("mem", W, "w", timeout=0))
    coord.connection.client_kill_filter(_type="normal", skipme=True)
    lock_id = coord.acquire_resource("mem", W, "w", timeout=0)
    assert lock_id and coord.release_resource(lock_id) is True


def test_an_interrupted_call_leaves_no_reply_for_the_next(coord, monkeypatch):
    from redis.connection import AbstractConnection

    real = AbstractConnection.read_response
    calls = []

    def interrupted(self, *a, **kw):
        if not calls:
            calls.append(1)
            raise KeyboardInterrupt  # after the command was sent, before its reply was read
        return real(self, *a, **kw)

    monkeypatch.setattr(AbstractConnection, "read_response", interrupted)
    with pytest.raises(KeyboardInterrupt):
        coord.acquire_resource("mem", W, "w", timeout=0)
    monkeypatch.setattr(AbstractConnection, "read_response", real)
    # the interrupted acquire may have been granted in Redis; the next call must read
    # its own reply (busy), not the stale one
    assert coord.acquire_resource("mem", W, "w2", timeout=0) is None
    assert coord.get_held_locks() == []


def test_reads_share_and_expired_holders_are_purged(coord, redis_url):
    r1 = coord.acquire_resource("mem", R, "a", timeout=0)
    r2 = coord.acquire_resource("mem", R, "b", timeout=0)
    assert r1 and r2
    # a holder whose lease lapsed (its process died) is purged by the next acquire
    coord.connection.zadd(coord.keys.resource_part("mem", "holders"), {r2: 1})
    assert coord.release_resource(r1) is True
    assert coord.release_resource(r2) is False  # lost, not released
    w = coord.acquire_resource("mem", W, "w", timeout=0)
    assert w and coord.get_resource_status("mem")["active_locks"] == 1
    coord.release_resource(w)


def test_shutdown_gives_the_connections_back(redis_url):
    conn = redis.Redis.from_url(redis_url)
    c = ResourceCoordinator(4, 1.0, connection=conn)
    c.register_resource("x", None, ResourceType.COMPUTATION)
    c.release_resource(c.acquire_resource("x", W, "w", timeout=0))
    assert conn.connection_pool._in_use_connections
    c.shutdown()
    assert not conn.connection_pool._in_use_connections
    conn.close()


_inherited: dict = {}


def _child(out):
    try:
        coord = _inherited["coord"]  # copied by fork, with the parent's lane connections
        lock_id = coord.acquire_resource("x", W, "child", timeout=5)
        out.put(bool(lock_id) and coord.release_resource(lock_id))
    except BaseException as exc:  # noqa: BLE001 - report anything to the parent
        out.put(repr(exc))


def test_a_forked_child_uses_its_own_connections(redis_url):
    conn = redis.Redis.from_url(redis_url)
    coord = ResourceCoordinator(4, 1.0, connection=conn)
    coord.register_resource("x", None, ResourceType.COMPUTATION)
    coord.release_resource(coord.acquire_resource("x", W, "parent", timeout=0))
    _inherited["coord"] = coord
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_child, args=(out,))
    child.start()
    assert out.get(timeout=30) is True
    child.join(10)
    # the parent's lane still works after the child used (and dropped) its copies
    lock_id = coord.acquire_resource("x", W, "parent", timeout=0)
    assert lock_id and coord.release_resource(lock_id) is True
    coord.shutdown()
    conn.close()


def test_a_retried_acquire_finds_its_own_grant(coord):
    keys = (coord.keys.resource_base("mem"), coord.keys.resource_registry, coord.keys.lock_index,
            coord.keys.lock_waitfor)
    args = ("mem", "lk-retried", "write", "w", "host:1:ctx", 1000, "1")
    acquire = coord._waiter  # the single-resource waiter runs lock_acquire on the lane
    first = acquire._eval(acquire._acquire_script, keys, args)
    again = acquire._eval(acquire._acquire_script, keys, args)  # as if the first reply was lost
    assert first[0] == again[0] == b"granted" and first[1] == again[1]
    other = acquire._eval(acquire._acquire_script, keys, ("mem", "lk-other", "write", "o", "host:1:o", 1000, "1"))
    assert other[0] == b"queued"
    assert acquire._eval(acquire._acquire_script, keys, ("mem", "lk-other", "write", "o", "host:1:o", 1000, "1"))[0] == b"queued"
    assert coord.get_resource_status("mem")["waiting_requests"] == 1
    from piano_dist.resources.status import release_lock
    assert release_lock(coord.connection, coord.keys, "lk-retried") is True
    assert coord.get_resource_status("mem")["writer"] == "o"
    assert release_lock(coord.connection, coord.keys, "lk-other") is True


def test_direct_script_calls_take_no_connection_from_the_pool_per_call(redis_url, monkeypatch):
    """Every ScriptSet call (task, memory, state, world scripts) goes through the client's
    lane: after the first call, none checks a connection out of the pool."""
    from piano_dist.connection import get_connection
    from piano_dist.scripts import ScriptSet

    client = get_connection(redis_url)
    scripts = ScriptSet(client)
    args = ["piano", "0", "ids", "node_1"]
    assert scripts.memory_assoc_read(keys=["m:nodes"], args=args) == [[], [], [], []]
    checkouts = []
    real = type(client.connection_pool).get_connection
    monkeypatch.setattr(type(client.connection_pool), "get_connection",
                        lambda pool, *a, **kw: checkouts.append(1) or real(pool, *a, **kw))
    for _ in range(20):
        assert ScriptSet(client).memory_assoc_read(keys=["m:nodes"], args=args) == [[], [], [], []]
    assert checkouts == []
    with client.pipeline(transaction=False) as pipe:  # a pipeline's calls stay redis-py's own
        scripts.memory_assoc_read(keys=["m:nodes"], args=args, client=pipe)
        assert pipe.execute() == [[[], [], [], []]]
    assert checkouts == [1]


def test_a_script_redis_forgot_is_loaded_then_sent_once(redis_url, redis_client):
    from piano_dist.connection import get_connection
    from piano_dist.scripts import ScriptSet

    scripts = ScriptSet(get_connection(redis_url))
    args = ["piano", "0", "ids", "node_1"]
    scripts.memory_assoc_read(keys=["m:nodes"], args=args)
    redis_client.script_flush()
    redis_client.config_resetstat()
    assert scripts.memory_assoc_read(keys=["m:nodes"], args=args) == [[], [], [], []]
    stats = redis_client.info("commandstats")
    # The refused EVALSHA, SCRIPT LOAD, the EVALSHA that ran: not the refused one twice.
    assert stats["cmdstat_evalsha"]["calls"] == 2
    # Redis 7 counts SCRIPT LOAD apart; 6.2 counts every SCRIPT subcommand together.
    assert stats.get("cmdstat_script|load", stats.get("cmdstat_script"))["calls"] == 1


def test_only_clients_that_retry_get_a_lane_and_clients_of_one_pool_share_it(redis_url):
    """A lane repeats a script after a lost reply through an ordinary call: only where
    piano-dist's retry policy would repeat it too. A caller's own client (no retries) and a
    quick-check client (deadline 0) call redis-py's Script directly."""
    from redis.commands.core import Script

    from piano_dist.connection import client_for_url, get_connection
    from piano_dist.resources.lane import lane_for
    from piano_dist.scripts import LanedScript, ScriptSet

    assert isinstance(ScriptSet(redis.Redis.from_url(redis_url)).memory_assoc_read, Script)
    assert isinstance(ScriptSet(client_for_url(redis_url, retry_deadline=0)).memory_assoc_read, Script)
    ours = get_connection(redis_url)
    assert isinstance(ScriptSet(ours).memory_assoc_read, LanedScript)
    sibling = redis.Redis(connection_pool=ours.connection_pool)
    assert lane_for(sibling) is lane_for(ours)  # no lane (and connections held aside) per client
