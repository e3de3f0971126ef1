"""The tally of counter increments (core.tally) and the model-call bookkeeping that goes
through it: summed in memory, sent in one round trip, never before what came earlier."""
import os

import pytest

from piano_dist.core import tally as tally_module
from piano_dist.core.context import TaskContext, set_current_task
from piano_dist.core.tally import Tally, tally_for
from piano_dist.llm.accounting import Accounting
from piano_dist.llm.fake import FakeLLM
from piano_dist.llm.settings import LLMSettings
from support.waiting import wait_until


def command_calls(client, *names):
    stats = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{n}", {}).get("calls", 0)) for n in names)


COUNTER_COMMANDS = ("incr", "incrby", "decr", "decrby", "incrbyfloat", "hincrby", "hincrbyfloat", "sadd")


def test_increments_to_one_counter_are_summed_into_one_command(redis_client):
    tally = Tally(redis_client, delay=60)
    for _ in range(50):
        tally.incr("c", 1)
    for _ in range(10):
        tally.incr("h", 0.25, "seconds")
    tally.incr("h", 2, "n")
    tally.incr("h", 0, "zero")
    tally.sadd("s", "a")
    tally.sadd("s", "b", "a")
    before = {n: command_calls(redis_client, n) for n in ("incrby", "hincrbyfloat", "hincrby", "sadd")}
    tally.flush()
    after = {n: command_calls(redis_client, n) for n in before}
    assert {n: after[n] - before[n] for n in before} == {"incrby": 1, "hincrbyfloat": 1, "hincrby": 1, "sadd": 1}
    assert int(redis_client.get("c")) == 50
    assert redis_client.hgetall("h") == {b"seconds": b"2.5", b"n": b"2"}
    assert redis_client.smembers("s") == {b"a", b"b"}
    assert not tally.pending


def test_what_gathers_is_sent_shortly_without_a_flush(redis_client):
    tally = Tally(redis_client, delay=0.01)
    tally.incr("gauge", 3)
    tally.incr("gauge", -1)
    wait_until(lambda: redis_client.get("gauge") == b"2", timeout=5, message="the tally's own thread to send")


def test_carried_increments_go_ahead_of_the_carriers_commands(redis_client):
    tally = Tally(redis_client, delay=60)
    tally.incr("c", 4)
    tally.sadd("s", "x")
    carried = tally.carry()
    assert not tally.pending
    with redis_client.pipeline(transaction=False) as pipe:
        ahead = carried.queue(pipe)
        pipe.get("c")
        pipe.scard("s")
        replies = pipe.execute()
    assert ahead == 2 and replies[ahead:] == [b"4", 1]


def test_a_forked_child_does_not_send_its_parents_increments(redis_client):
    parent = tally_for(redis_client)
    parent.delay = 60
    parent.incr("forked", 1)
    pid = os.fork()
    if pid == 0:
        child = tally_for(redis_client)
        os._exit(0 if child is not parent and not child.pending else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    parent.flush()
    assert redis_client.get("forked") == b"1"


@pytest.fixture
def slow_tally(monkeypatch):
    """Tallies that only send when carried or flushed (their own thread waits a minute)."""
    monkeypatch.setattr(tally_module, "DEFAULT_DELAY", 60)
    tally_module._tallies.clear()
    yield
    tally_module._tallies.clear()


def test_a_tasks_model_calls_cost_no_round_trip_until_its_outcome_is_recorded(redis_client, slow_tally):
    llm = FakeLLM(median_latency=0, connection=redis_client, settings=LLMSettings(cache=False))
    tally = tally_for(redis_client)
    ctx = TaskContext("t1", "caller.alice", "run", 1, "w1", None, "alice")
    ctx.end_hooks, ctx.outcome_tally = [], tally
    before = command_calls(redis_client, *COUNTER_COMMANDS)
    set_current_task(ctx)
    try:
        for i in range(20):
            llm.complete(f"prompt {i}")
    finally:
        set_current_task(None)
    for hook in ctx.end_hooks:
        hook()
    assert command_calls(redis_client, *COUNTER_COMMANDS) == before, "bookkeeping was sent per call"
    assert tally.pending
    # What the finisher does: carry the tally ahead of the task's outcome.
    with redis_client.pipeline(transaction=False) as pipe:
        tally.carry().queue(pipe)
        pipe.execute()
    assert int(redis_client.get("piano:llm:calls")) == 20
    assert int(redis_client.get("piano:llm:in_flight") or 0) == 0
    accounting = Accounting(redis_client, llm.keys)
    assert accounting.total_raw()["calls"] == 20
    assert accounting.raw("module", ["caller.alice"])["caller.alice"]["calls"] == 20
    assert accounting.raw("agent", ["alice"])["alice"]["calls"] == 20


def test_a_call_outside_any_task_is_accounted_when_it_returns(redis_client, slow_tally):
    llm = FakeLLM(median_latency=0, connection=redis_client, settings=LLMSettings(cache=False))
    llm.complete("hello")
    assert int(redis_client.get("piano:llm:calls")) == 1
    assert int(redis_client.get("piano:llm:in_flight") or 0) == 0
    assert Accounting(redis_client, llm.keys).total_raw()["calls"] == 1


def test_a_task_on_another_connection_sends_its_bookkeeping_at_its_end(redis_client, redis_url, slow_tally):
    import redis as redis_lib

    other = redis_lib.Redis.from_url(redis_url)
    llm = FakeLLM(median_latency=0, connection=other, settings=LLMSettings(cache=False))
    ctx = TaskContext("t2", "caller.bob", "run", 1, "w1", None, "bob")
    ctx.end_hooks, ctx.outcome_tally = [], tally_for(redis_client)  # the finisher's is not llm's
    set_current_task(ctx)
    try:
        llm.complete("a")
        llm.complete("b")
    finally:
        set_current_task(None)
    for hook in ctx.end_hooks:
        hook()
    assert int(redis_client.get("piano:llm:calls")) == 2
    assert Accounting(redis_client, llm.keys).raw("agent", ["bob"])["bob"]["calls"] == 2
    other.close()


def test_increments_that_cannot_be_sent_are_dropped_with_one_warning(caplog):
    """Bookkeeping never fails the work it counts: a Redis that is away costs a warning
    (one per ten seconds, however many flushes fail), and the tally stays usable."""
    import socket

    from piano_dist.connection import client_for_url

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once the socket is closed
    away = client_for_url(f"redis://127.0.0.1:{port}/0", retry_deadline=0)
    tally = Tally(away, delay=60)
    with caplog.at_level("WARNING", logger="piano_dist.tally"):
        for _ in range(3):
            tally.incr("c", 1)
            tally.flush()
    assert not tally.pending
    assert len([r for r in caplog.records if "not recorded" in r.getMessage()]) == 1
