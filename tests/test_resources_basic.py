"""ResourceCoordinator semantics within one process, against the private redis-server."""
from __future__ import annotations

import threading
import time

import pytest
import redis
from click.testing import CliRunner

from piano_dist.resources import (AccessMode, FencedWriteRejected, LockLimitError, ResourceAcquireTimeout,
                                  ResourceBusyError, ResourceCoordinator, ResourceType,
                                  UnknownResourceError, current_fence, fence_args, raise_if_fenced)
from support.resource_procs import FENCED_STORE
from support.waiting import wait_until

R, W, X = AccessMode.READ, AccessMode.WRITE, AccessMode.EXCLUSIVE


@pytest.fixture
def make(redis_url):
    made = []

    def factory(**kw):
        kw.setdefault("lease", 1.0)
        coord = ResourceCoordinator(kw.pop("max_concurrent_locks", 10), kw.pop("default_timeout", 2.0),
                                    connection=redis.Redis.from_url(redis_url), **kw)
        made.append(coord)
        return coord

    yield factory
    for coord in made:
        coord.shutdown()


@pytest.fixture
def coord(make):
    c = make()
    c.register_resource("mem", {"episodes": []}, ResourceType.EPISODIC_MEMORY)
    return c


def test_registration_is_cluster_wide_and_rejects_another_type(coord, make):
    other = make()
    assert other.registered_resources() == {"mem": "episodic_memory"}
    with pytest.raises(ValueError, match="already registered as type 'episodic_memory', not 'network'"):
        other.register_resource("mem", object(), ResourceType.NETWORK)
    assert other.registered_resources() == {"mem": "episodic_memory"}
    # the other process has no local object: the context yields None until attached
    with other.acquire_context("mem", R, "h") as obj:
        assert obj is None
    other.attach_resource("mem", "local copy")
    with other.acquire_context("mem", R, "h") as obj:
        assert obj == "local copy"


def test_registering_again_with_the_same_type_adopts_the_resource(coord, make):
    held = coord.acquire_resource("mem", W, "writer")
    later = make()  # a new coordinator (as a seed test's setUp builds one per test)
    later.register_resource("mem", {"episodes": ["mine"]}, ResourceType.EPISODIC_MEMORY)
    assert later.resources == {"mem": {"episodes": ["mine"]}}
    assert later.resource_types == {"mem": ResourceType.EPISODIC_MEMORY}
    # Adopting changed nothing in Redis: the writer still holds its lock.
    assert [lk["lock_id"] for lk in later.get_resource_status("mem")["locks"]] == [held]
    assert held in coord.active_locks and not later.active_locks
    assert later.acquire_resource("mem", R, "reader", timeout=0) is None
    assert coord.release_resource(held)
    with later.acquire_context("mem", R, "reader") as obj:
        assert obj == {"episodes": ["mine"]}


def test_bad_input_is_named(coord):
    with pytest.raises(ValueError, match="resource_type"):
        coord.register_resource("x", 1, "no-such-type")
    with pytest.raises(ValueError, match="resource_id"):
        coord.register_resource("a{b}", 1, ResourceType.NETWORK)
    with pytest.raises(ValueError, match="access_mode"):
        coord.acquire_resource("mem", "sideways", "h")
    with pytest.raises(ValueError, match="holder_id"):
        coord.acquire_resource("mem", R, "")
    with pytest.raises(ValueError, match="timeout"):
        coord.acquire_resource("mem", R, "h", timeout=-1)
    with pytest.raises(UnknownResourceError, match="nope"):
        coord.acquire_resource("nope", R, "h")
    with pytest.raises(KeyError):  # the seed raised KeyError
        coord.unregister_resource("nope")
    with pytest.raises(ValueError, match="max_concurrent_locks"):
        ResourceCoordinator(0, 1.0, connection=coord.connection)


def test_modes_read_shared_write_and_exclusive_exclude(coord):
    r1 = coord.acquire_resource("mem", R, "a", timeout=0)
    r2 = coord.acquire_resource("mem", R, "b", timeout=0)
    assert r1 and r2 and r1 != r2
    assert coord.acquire_resource("mem", W, "c", timeout=0) is None
    assert coord.acquire_resource("mem", X, "c", timeout=0) is None
    status = coord.get_resource_status("mem")
    assert sorted(status["readers"]) == ["a", "b"] and status["writer"] is None
    assert {lk["lock_id"] for lk in status["locks"]} == {r1, r2}
    coord.release_resource(r1), coord.release_resource(r2)
    w = coord.acquire_resource("mem", W, "c", timeout=0)
    assert w and coord.get_resource_status("mem")["writer"] == "c"
    assert coord.acquire_resource("mem", R, "d", timeout=0) is None
    assert coord.acquire_resource("mem", W, "d", timeout=0) is None
    coord.release_resource(w)
    x = coord.acquire_resource("mem", X, "e", timeout=0)
    assert coord.acquire_resource("mem", R, "f", timeout=0) is None
    assert coord.release_resource(x) is True
    assert coord.release_resource(x) is False


def test_same_holder_id_never_gets_write_twice(coord):
    first = coord.acquire_resource("mem", W, "shared-name", timeout=0)
    assert first
    assert coord.acquire_resource("mem", W, "shared-name", timeout=0.2) is None


def test_reentrancy_only_when_asked(coord):
    a = coord.acquire_resource("mem", W, "me", timeout=0)
    assert coord.acquire_resource("mem", R, "me", timeout=0, reentrant=True) == a
    assert coord.get_held_locks()[0].lock_count == 2
    assert coord.release_resource(a) is True  # one level
    assert coord.get_resource_status("mem")["active_locks"] == 1
    assert coord.release_resource(a) is True
    assert coord.get_resource_status("mem")["active_locks"] == 0


def test_timeout_zero_tries_once_and_timeout_waits_about_that_long(coord):
    w = coord.acquire_resource("mem", W, "w", timeout=0)
    started = time.monotonic()
    assert coord.acquire_resource("mem", R, "r", timeout=0) is None
    assert coord.acquire_resource("mem", R, "r", timeout=0.4) is None
    assert time.monotonic() - started >= 0.4
    assert coord.get_resource_status("mem")["waiting_requests"] == 0  # the timed-out wait left
    coord.release_resource(w)


def test_context_manager_yields_object_and_always_releases(coord):
    with coord.acquire_context("mem", W, "m") as memory:
        assert memory == {"episodes": []}
        assert coord.get_resource_status("mem")["writer"] == "m"
    assert coord.get_resource_status("mem")["active_locks"] == 0
    with pytest.raises(ZeroDivisionError):
        with coord.acquire_context("mem", W, "m"):
            1 / 0
    assert coord.get_resource_status("mem")["active_locks"] == 0
    w = coord.acquire_resource("mem", W, "other", timeout=0)
    with pytest.raises(ResourceAcquireTimeout) as info:
        with coord.acquire_context("mem", R, "m", timeout=0.1):
            pass
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, TimeoutError)
    coord.release_resource(w)


def test_metrics_count(coord):
    with coord.acquire_context("mem", R, "a"):
        pass
    w = coord.acquire_resource("mem", W, "b")
    assert coord.acquire_resource("mem", R, "c", timeout=0.1) is None
    coord.release_resource(w)
    m = coord.get_coordinator_metrics()
    assert m.total_requests == 3 and m.successful_acquisitions == 2
    assert m.failed_acquisitions == 1 and m.timeout_count == 1 and m.contention_count == 1
    assert m.peak_concurrent_locks == 1 and m.average_wait_time >= 0
    status = coord.get_system_status()
    assert status["registered_resources"] == 1 and status["max_concurrent_locks"] == 10
    assert status["metrics"]["total_requests"] == 3


def test_max_concurrent_locks_is_enforced_with_a_clear_error(make):
    coord = make(max_concurrent_locks=2)
    for name in ("a", "b", "c"):
        coord.register_resource(name, None, ResourceType.COMPUTATION)
    first = coord.acquire_resource("a", R, "h")
    coord.acquire_resource("b", R, "h")
    with pytest.raises(LockLimitError, match="max_concurrent_locks=2"):
        coord.acquire_resource("c", R, "h")
    coord.release_resource(first)
    assert coord.acquire_resource("c", R, "h")


def test_waiters_are_served_fifo_with_writer_preference(coord):
    reader = coord.acquire_resource("mem", R, "r1", timeout=0)
    got = {}
    writer = threading.Thread(target=lambda: got.setdefault("w", coord.acquire_resource("mem", W, "w", timeout=5)))
    writer.start()
    wait_until(lambda: coord.get_resource_status("mem")["waiting_requests"] == 1, 5, message="writer queued")
    # a new reader would fit beside r1, but a writer is queued first: it must not pass it
    assert coord.acquire_resource("mem", R, "r2", timeout=0) is None
    late = threading.Thread(target=lambda: got.setdefault("r3", coord.acquire_resource("mem", R, "r3", timeout=5)))
    late.start()
    wait_until(lambda: coord.get_resource_status("mem")["waiting_requests"] == 2, 5, message="reader queued")
    coord.release_resource(reader)
    writer.join(5)
    assert got["w"] and "r3" not in got  # writer first; the later reader still waits
    assert [w["holder"] for w in coord.get_resource_status("mem")["waiters"]] == ["r3"]
    coord.release_resource(got["w"])
    late.join(5)
    assert got["r3"]
    coord.release_resource(got["r3"])


def test_lease_is_renewed_while_the_holder_lives(coord, make):
    lock_id = coord.acquire_resource("mem", W, "long", timeout=0)
    other = make()
    before = coord.get_resource_status("mem")["locks"][0]["expires_at"]
    wait_until(lambda: coord.get_resource_status("mem")["locks"][0]["expires_at"] > before + 1.5,
               timeout=5, message="lease renewed past its first expiry")
    assert other.acquire_resource("mem", W, "other", timeout=0) is None
    assert coord.release_resource(lock_id)


def test_renewal_cap_lets_the_lease_lapse_and_fences_the_stale_holder(make, redis_client):
    capped = make(lease=0.4, max_hold=0.2)
    capped.register_resource("counter", None, ResourceType.AGENT_STATE)
    other = make()
    store = redis_client.register_script(FENCED_STORE)

    def fenced_store(value):
        try:
            store(keys=["c", "accepted"], args=[*fence_args("counter"), value])
        except redis.ResponseError as exc:
            raise_if_fenced(exc)
            raise

    stale = capped.acquire_resource("counter", W, "slow", timeout=0)
    key, token = current_fence("counter")
    assert key == capped.keys.resource_fence("counter")
    fenced_store(1)  # accepted while it holds the newest token
    def grab_in_another_thread():
        got = []
        t = threading.Thread(target=lambda: got.append(other.acquire_resource("counter", W, "fresh", timeout=0)))
        t.start(), t.join()
        return got[0]

    newer = wait_until(grab_in_another_thread, 5, message="lock freed after the renewal cap plus one lease")
    assert other.get_held_locks()[0].fence > token
    with pytest.raises(FencedWriteRejected):
        fenced_store(2)
    assert redis_client.get("c") == b"1"
    assert capped.release_resource(stale) is False  # it was lost, not released
    other.release_resource(newer)


def test_current_fence_is_per_thread(coord):
    coord.acquire_resource("mem", W, "t", timeout=0)
    assert current_fence("mem") is not None
    seen = []
    t = threading.Thread(target=lambda: seen.append(current_fence("mem")))
    t.start(), t.join()
    assert seen == [None]
    assert current_fence("other-resource") is None


def test_read_locks_carry_no_fence(coord):
    lock_id = coord.acquire_resource("mem", R, "r", timeout=0)
    assert current_fence("mem") is None
    coord.release_resource(lock_id)


def test_fence_is_forgotten_after_release(coord):
    lock_id = coord.acquire_resource("mem", W, "w", timeout=0)
    coord.release_resource(lock_id)
    assert current_fence("mem") is None


def test_acquire_many_is_all_or_nothing(coord):
    coord.register_resource("sem", None, ResourceType.SEMANTIC_MEMORY)
    blocker = coord.acquire_resource("sem", W, "blocker", timeout=0)
    assert coord.acquire_many([("mem", W), ("sem", R)], "both", timeout=0) is None
    assert coord.get_resource_status("mem")["active_locks"] == 0  # nothing held meanwhile
    got = {}
    t = threading.Thread(target=lambda: got.setdefault("ids", coord.acquire_many([("mem", W), ("sem", R)], "both", timeout=5)))
    t.start()
    wait_until(lambda: coord.connection.zcard(coord.keys.resource_part("sem", "watch:read")) == 1, 5,
               message="acquire_many watching")
    assert coord.get_resource_status("mem")["active_locks"] == 0
    coord.release_resource(blocker)
    t.join(5)
    ids = got["ids"]
    assert len(ids) == 2
    assert coord.get_resource_status("mem")["writer"] == "both"
    assert coord.get_resource_status("sem")["readers"] == ["both"]
    for lock_id in ids:
        assert coord.release_resource(lock_id)
    with pytest.raises(ValueError, match="more than once"):
        coord.acquire_many([("mem", W), ("mem", R)], "dup")
    with pytest.raises(UnknownResourceError):
        coord.acquire_many([("mem", W), ("ghost", R)], "x")


def test_unregister_refuses_while_in_use(coord):
    lock_id = coord.acquire_resource("mem", R, "r", timeout=0)
    with pytest.raises(ResourceBusyError):
        coord.unregister_resource("mem")
    coord.release_resource(lock_id)
    coord.unregister_resource("mem")
    assert coord.registered_resources() == {}
    with pytest.raises(UnknownResourceError):
        coord.acquire_resource("mem", R, "r")


def test_shutdown_releases_everything(coord, make):
    coord.acquire_resource("mem", W, "w", timeout=0)
    coord.shutdown()
    assert make().acquire_resource("mem", W, "next", timeout=0)
    with pytest.raises(RuntimeError, match="shut down"):
        coord.acquire_resource("mem", R, "r")


def _locks_command():
    try:
        from piano_dist.cli.locks_command import locks
    except ModuleNotFoundError:  # cli/ not yet a package in this checkout: load the file
        import importlib.util
        from pathlib import Path

        path = Path(__file__).resolve().parents[1] / "cli" / "locks_command.py"
        spec = importlib.util.spec_from_file_location("piano_locks_command", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        locks = module.locks
    return locks


def test_cli_lists_and_releases(coord, redis_client):
    locks = _locks_command()

    held = coord.acquire_resource("mem", W, "writer-module", timeout=0)
    waiting = threading.Thread(target=lambda: coord.acquire_resource("mem", R, "reader-module", timeout=5))
    waiting.start()
    wait_until(lambda: coord.get_resource_status("mem")["waiting_requests"] == 1, 5, message="waiter")
    runner = CliRunner()
    out = runner.invoke(locks, [], obj={"connection": redis_client})
    assert out.exit_code == 0, out.output
    assert "HOLD write" in out.output and held in out.output and "writer-module" in out.output
    assert "WAIT read" in out.output and "reader-module" in out.output
    out = runner.invoke(locks, ["release", held], obj={"connection": redis_client})
    assert out.exit_code == 0 and f"released {held}" in out.output
    waiting.join(5)
    assert coord.get_resource_status("mem")["readers"] == ["reader-module"]
    out = runner.invoke(locks, ["release", held], obj={"connection": redis_client})
    assert out.exit_code != 0 and "not held" in out.output
