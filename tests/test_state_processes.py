"""State across real processes: proposers, appliers and subscribers in different processes
sharing one agent's state through the private redis-server."""
from __future__ import annotations

import json
import multiprocessing as mp
import time

import pytest
import redis

from piano_dist.state import (
    ChangeStatus, RedisAgentState, StateChangeType, StateCoordinator, SyncPolicy,
)
from support.waiting import wait_until

CTX = mp.get_context("spawn")  # children start clean: no threads or sockets inherited


def _start(target, *args) -> mp.Process:
    proc = CTX.Process(target=target, args=args, daemon=True)
    proc.start()
    return proc


def _run(target, *args, timeout: float = 60.0) -> None:
    proc = _start(target, *args)
    proc.join(timeout)
    assert proc.exitcode == 0, f"{target.__name__} exited with {proc.exitcode}"


class Agent:
    def __init__(self, name):
        self.name = name
        self.emotional_state = {"happiness": 0.5}
        self.goals = []


# --- child process bodies (module level so spawn can import them) --------------------------
class _ListRecorder:
    """A module that records what it is told into a Redis list, where the test can see it."""

    def __init__(self, conn, key):
        self.conn, self.key = conn, key

    def on_state_change(self, changes):
        for ch in changes:
            self.conn.rpush(self.key, json.dumps([ch.version, ch.path, ch.change_type.value, ch.new_value]))


def subscriber_main(url, agent_id, module_id, path):
    conn = redis.Redis.from_url(url)
    coord = StateCoordinator(None, agent_id=agent_id, connection=conn)
    module = _ListRecorder(conn, f"test:seen:{module_id}")
    coord.register_module(module_id, module)
    coord.subscribe_to_path(module_id, path)
    conn.set(f"test:ready:{module_id}", 1)
    conn.blpop([f"test:stop:{module_id}"], timeout=120)
    coord.shutdown()


def propose_main(url, agent_id, module_id, path, value, priority, policy):
    conn = redis.Redis.from_url(url)
    coord = StateCoordinator(RedisAgentState(agent_id, connection=conn), SyncPolicy(policy), connection=conn)
    coord.register_module(module_id, None)
    change_id = coord.propose_change(module_id, path, value, priority=priority)
    conn.rpush("test:proposed", change_id)
    coord.shutdown()


def transaction_main(url, agent_id, commit):
    conn = redis.Redis.from_url(url)
    coord = StateCoordinator(None, agent_id=agent_id, connection=conn)
    coord.register_module("planner", None)
    coord.begin_transaction("goal_update")
    coord.propose_change("planner", "goals", ["committed" if commit else "rolled back"])
    coord.propose_change("planner", "goal_progress", 1.0 if commit else -1.0)
    if commit:
        coord.commit_transaction("goal_update")
    else:
        coord.rollback_transaction("goal_update")
    coord.shutdown()


def swarm_main(url, agent_id, index, count):
    conn = redis.Redis.from_url(url)
    # A log long enough for the whole run: the test reads every change back from it.
    coord = StateCoordinator(RedisAgentState(agent_id, connection=conn), SyncPolicy.BATCHED, batch_size=10,
                             connection=conn, log_maxlen=10_000)
    module_id = f"p{index}"
    coord.register_module(module_id, None)
    conn.incr("test:swarm:ready")
    deadline = time.monotonic() + 30
    while int(conn.get("test:swarm:ready")) < 4:  # start together so proposals interleave
        if time.monotonic() > deadline:
            raise TimeoutError("the other proposer processes never started")
        time.sleep(0.001)
    ids = []
    for n in range(count):
        if n % 2:
            ids.append(coord.propose_change(module_id, "tally", {f"{module_id}_{n}": n}, StateChangeType.MERGE))
        else:
            ids.append(coord.propose_change(module_id, "mood.level", f"{module_id}:{n}", priority=n % 3))
    coord.apply_changes()
    conn.rpush("test:swarm:ids", *ids)
    coord.shutdown()


def tx_writer_main(url, agent_id, rounds):
    conn = redis.Redis.from_url(url)
    coord = StateCoordinator(None, agent_id=agent_id, connection=conn)
    coord.register_module("writer", None)
    for n in range(1, rounds + 1):
        with coord.transaction():
            coord.propose_change("writer", "left.n", n)
            coord.propose_change("writer", "right.n", n)
            coord.propose_change("writer", "pair", {"a": n, "b": n})
    coord.shutdown()


# --- tests --------------------------------------------------------------------------------
def test_seed_behaviours_with_modules_in_different_processes(redis_url, redis_client):
    agent = Agent("isabella")
    main = StateCoordinator(agent, SyncPolicy.IMMEDIATE, connection=redis_client)
    main.register_module("main", None)
    sub = _start(subscriber_main, redis_url, "isabella", "observer", "emotional_state.happiness")
    try:
        wait_until(lambda: redis_client.get("test:ready:observer"), 30, message="subscriber ready")

        # immediate apply, proposed in another process; seen by this process's object
        # and delivered to the subscriber in a third one
        _run(propose_main, redis_url, "isabella", "module1", "emotional_state.happiness", 0.8, 1, "immediate")
        wait_until(lambda: agent.emotional_state["happiness"] == 0.8, message="local object updated")
        seen = lambda: [json.loads(x) for x in redis_client.lrange("test:seen:observer", 0, -1)]  # noqa: E731
        wait_until(lambda: len(seen()) == 1, message="subscriber notified")
        assert seen()[0][1:] == ["emotional_state.happiness", "update", 0.8]

        # priority conflict between two proposing processes, settled here
        _run(propose_main, redis_url, "isabella", "low", "emotional_state.happiness", 0.2, 1, "on_demand")
        _run(propose_main, redis_url, "isabella", "high", "emotional_state.happiness", 0.3, 2, "on_demand")
        low_id, high_id = [x.decode() for x in redis_client.lrange("test:proposed", 1, 2)]
        main.apply_changes()
        assert agent.emotional_state["happiness"] == 0.3
        assert main.get_change_status(low_id).status is ChangeStatus.SUPERSEDED
        assert main.get_change_status(high_id).status is ChangeStatus.APPLIED
        wait_until(lambda: len(seen()) == 2, message="only the winner is delivered")

        # snapshot here, change elsewhere, restore here: everyone sees the restored value
        main.create_snapshot("checkpoint")
        _run(propose_main, redis_url, "isabella", "module1", "emotional_state.happiness", 0.9, 0, "immediate")
        wait_until(lambda: agent.emotional_state["happiness"] == 0.9, message="remote change seen")
        main.restore_snapshot("checkpoint")
        assert agent.emotional_state["happiness"] == 0.3
        wait_until(lambda: len(seen()) == 4, message="reset delivered")
        assert [s[2] for s in seen()] == ["update", "update", "update", "reset"]
        assert seen()[3][3] == {"happiness": 0.3}

        # transactions in another process: commit shows, rollback leaves no trace
        _run(transaction_main, redis_url, "isabella", True)
        # The local object takes a transaction's changes one attribute at a time (docs/state.md:
        # only Redis readers see it whole), so wait for both rather than read one after the other.
        wait_until(lambda: agent.goals == ["committed"] and getattr(agent, "goal_progress", None) == 1.0,
                   message="committed transaction seen")
        version = main.get_version()
        _run(transaction_main, redis_url, "isabella", False)
        assert main.get_version() == version and main.get_value("goals") == ["committed"]
    finally:
        redis_client.rpush("test:stop:observer", 1)
        sub.join(30)
        main.shutdown()
    assert sub.exitcode == 0


@pytest.mark.slow
def test_four_processes_500_proposals_each_on_the_same_paths(redis_url, redis_client):
    main = StateCoordinator(None, agent_id="swarm", connection=redis_client, log_maxlen=10_000)
    main.register_conflict_resolver("mood.level", "latest_wins")
    main.register_conflict_resolver("tally", "merge")
    procs = [_start(swarm_main, redis_url, "swarm", i, 500) for i in range(4)]
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    main.apply_changes()
    store = main.store

    ids = [x.decode() for x in redis_client.lrange("test:swarm:ids", 0, -1)]
    assert len(ids) == len(set(ids)) == 2000
    outcomes = {change_id: store.outcome(change_id) for change_id in ids}
    statuses = {o.status.value for o in outcomes.values()}
    assert statuses == {"applied", "superseded"}, statuses  # every proposal settled, none lost
    assert main.get_state_metrics().conflicts_resolved > 0  # proposals really met in batches
    assert store.pending_count() == 0

    # the resolver's answer: latest_wins -> each superseded mood proposal names the one
    # that won its batch, applied; the state holds the last applied one's value
    applied = {i for i, o in outcomes.items() if o.status.value == "applied"}
    for o in outcomes.values():
        if o.path == "mood.level" and o.status.value == "superseded":
            assert o.reason.startswith("superseded by ") and o.reason.split()[-1] in applied, o
    moods = [e for e in store.read_log(count=10_000) if e.change.path == "mood.level"]
    assert main.get_value("mood.level") == moods[-1].new
    # merge -> every tally proposal is in
    tally = main.get_value("tally")
    assert len(tally) == 1000
    assert all(o.status.value == "applied" for o in outcomes.values() if o.path == "tally")

    # the log holds every applied change exactly once, in version order
    log = redis_client.xrange(store.log, "-", "+")
    logged = [f[b"id"].decode() for _, f in log]
    versions = [int(f[b"version"]) for _, f in log]
    assert versions == list(range(1, len(versions) + 1))
    assert len(logged) == len(set(logged))
    assert set(logged) == applied
    main.shutdown()


@pytest.mark.slow
def test_killed_subscriber_catches_up_exactly_once_in_order(redis_url, redis_client):
    writer = RedisAgentState("phoenix", connection=redis_client)
    cursor_of = lambda: (redis_client.hget(writer.store.cursors, "watcher") or b"").decode()  # noqa: E731
    seen = lambda: [json.loads(x)[0] for x in redis_client.lrange("test:seen:watcher", 0, -1)]  # noqa: E731

    sub = _start(subscriber_main, redis_url, "phoenix", "watcher", "counter")
    wait_until(lambda: redis_client.get("test:ready:watcher"), 30, message="subscriber ready")
    written = [writer.set("counter.value", n) for n in range(50)]
    writer.set("elsewhere", 1)  # not on the subscribed path
    wait_until(lambda: len(seen()) == 50 and cursor_of() == writer.store.last_log_id(), 30,
               message="first 50 delivered and acknowledged")
    sub.kill()
    sub.join(10)

    written += [writer.set("counter.value", n) for n in range(50, 120)]  # while it is down
    redis_client.delete("test:ready:watcher")
    sub = _start(subscriber_main, redis_url, "phoenix", "watcher", "counter")
    wait_until(lambda: redis_client.get("test:ready:watcher"), 30, message="subscriber back")
    written += [writer.set("counter.value", n) for n in range(120, 150)]  # after it is back
    wait_until(lambda: len(seen()) >= 150, 30, message="caught up")
    redis_client.rpush("test:stop:watcher", 1)
    sub.join(30)
    assert seen() == written  # every change once, in version order, none from elsewhere


def test_transactions_are_never_seen_half_applied(redis_url, redis_client):
    reader = RedisAgentState("atomic", connection=redis_client)
    reader.set("left", {"n": 0})
    reader.set("right", {"n": 0})
    reader.set("pair", {"a": 0, "b": 0})
    writer = _start(tx_writer_main, redis_url, "atomic", 200)
    observations = 0
    last = 0
    while writer.is_alive() or observations == 0:
        state = reader.to_dict()
        left, right, pair = state["left"]["n"], state["right"]["n"], state["pair"]
        assert left == right == pair["a"] == pair["b"], state
        assert left >= last
        last = left
        observations += 1
    writer.join(30)
    assert writer.exitcode == 0
    assert reader.to_dict()["left"]["n"] == 200
    assert observations > 1
