"""What a worker does per task, kept cheap without giving anything up: stored arguments
checked as they are parsed, a cancellation flag without a lock per task, no RQ result
stream for a task that returned nothing."""
import threading

import pytest

from piano_dist import ConcurrentModuleManager
from piano_dist.core.context import CancelFlag
from piano_dist.errors import SecurityError
from piano_dist.security import SecurityValidator
from support.sample_modules import Echo


@pytest.mark.parametrize("text, message", [
    ('[[NaN], {}]', "NaN"), ('[[1], {"Infinity": -Infinity}]', "Infinity"), ('[[], {"1a": 2}]', "keyword"),
    ('[1, 2]', "pair"), ('{"a": 1}', "pair"), ('[[', "not valid JSON"),
    ('[[' + '[' * 40 + ']' * 40 + '], {}]', "nested deeper"), ('[["' + 'x' * 1_000_001 + '"], {}]', "limit"),
])
def test_stored_arguments_are_checked_as_they_are_parsed(text, message):
    with pytest.raises(SecurityError, match=message):
        SecurityValidator.decode_execution_args(text)


def test_stored_arguments_come_back_as_submitted():
    args, kwargs, args_json, kwargs_json = SecurityValidator.encode_execution_args((1, "a", [2.5, None]), {"k": {"x": True}})
    assert SecurityValidator.decode_execution_args(f"[{args_json},{kwargs_json}]") == (args, kwargs)
    assert SecurityValidator.decode_execution_args("[[],{}]") == ([], {})


def test_the_cancel_flag_behaves_as_an_event():
    flag = CancelFlag()
    assert not flag.is_set() and flag.wait(0.01) is False
    waiter = threading.Thread(target=lambda: results.append(flag.wait(10)))
    results = []
    waiter.start()
    flag.set()
    waiter.join(timeout=10)
    assert results == [True] and flag.is_set() and flag.wait() is True


def test_a_task_that_returns_nothing_leaves_no_rq_result_stream(redis_url, redis_client):
    with ConcurrentModuleManager(None, max_workers=1) as manager:
        manager.register_module("echo", Echo(None))
        nothing = manager.submit_task("echo", "nothing")
        something = manager.submit_task("echo", "add", args=(1, 2))
        failed = manager.submit_task("echo", "add", args=(1, "x"))
        statuses = manager.wait([nothing, something, failed], timeout=30)
    assert statuses[nothing]["status"] == "completed" and statuses[nothing]["result"] is None
    assert not redis_client.exists(f"rq:results:{nothing}")
    assert redis_client.exists(f"rq:results:{something}") and redis_client.exists(f"rq:results:{failed}")


def test_a_worker_runs_at_most_its_cpu_lanes_of_tasks_while_more_wait(redis_url, redis_client, monkeypatch):
    from support.sample_modules import LaneProbe

    monkeypatch.setenv("PIANO_CPU_LANES", "2")
    with ConcurrentModuleManager(None, max_workers=8) as manager:
        manager.register_module("probe", LaneProbe(None))
        ids = [manager.submit_task("probe") for _ in range(8)]
        statuses = manager.wait(ids, timeout=60)
    assert all(s["status"] == "completed" for s in statuses.values())
    seen = {k.decode(): int(v) for k, v in redis_client.hgetall("test:lanes").items()}
    assert seen["max_working"] <= 2  # never more tasks working than lanes
    assert seen["max_waiting"] >= 3  # while the other slots held tasks that wait


def test_cpu_lanes_must_be_a_positive_integer(monkeypatch):
    from piano_dist.core.engine import cpu_lanes_from_env

    monkeypatch.setenv("PIANO_CPU_LANES", "0")
    with pytest.raises(ValueError, match="PIANO_CPU_LANES"):
        cpu_lanes_from_env()
    monkeypatch.setenv("PIANO_CPU_LANES", "12")
    assert cpu_lanes_from_env() == 12


def test_outcomes_are_recorded_after_redis_forgot_the_scripts(redis_url, redis_client):
    with ConcurrentModuleManager(None, max_workers=2) as manager:
        manager.register_module("echo", Echo(None))
        first = manager.submit_task("echo", "add", args=(1, 1))
        assert manager.get_result(first, timeout=30) == 2
        redis_client.script_flush()  # as after a restart: the next finish batch meets NOSCRIPT
        again = manager.submit_task("echo", "add", args=(2, 2))
        assert manager.get_result(again, timeout=30) == 4


def test_unique_ids_differ_across_threads_and_a_forked_child():
    import os

    from piano_dist.ids import unique_hex

    ids = {unique_hex() for _ in range(10_000)}
    assert len(ids) == 10_000 and all(len(i) == 32 for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child's stream must not repeat the parent's
        os.write(write, unique_hex().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    assert child != unique_hex() and len(child) == 32


def test_scripts_are_registered_once_per_client_not_per_script_set(redis_client, monkeypatch):
    """Memories, state stores and worlds are built per call, each with a ScriptSet: the
    script's text is hashed once per client, not once per call."""
    from piano_dist.scripts import ScriptSet

    registered = []
    original = type(redis_client).register_script

    def counting(self, script):
        registered.append(script)
        return original(self, script)

    monkeypatch.setattr(type(redis_client), "register_script", counting)
    for _ in range(5):
        ScriptSet(redis_client).memory_touch
    assert len(registered) == 1
    other = type(redis_client)(connection_pool=redis_client.connection_pool)
    assert ScriptSet(other).memory_touch.sha == ScriptSet(redis_client).memory_touch.sha
    assert len(registered) == 2
