"""StateCoordinator and RedisAgentState in one process, against the private redis-server."""
from __future__ import annotations

import json
import types

import pytest

from piano_dist.errors import (
    FencedWriteRejected, SecurityError, StateConflictError, StateWriteError, UnknownSnapshotError,
)
from piano_dist.state import (
    ChangeStatus, ConflictResolution, RedisAgentState, StateChangeType, StateCoordinator, SyncPolicy, agent_id_of,
)
from piano_dist.state.paths import validate_state_path, validate_state_value
from piano_dist.state.tree import MISSING, from_leaves, to_leaves
from support.waiting import wait_until


class Agent:
    def __init__(self, name="Isabella Rodriguez"):
        self.name = name
        self.emotional_state = {"happiness": 0.5, "stress": 0.2}
        self.goals = ["open the cafe"]
        self.maze = object()  # not JSON: stays local
        self._private = 1


class Recorder:
    def __init__(self):
        self.changes = []

    def on_state_change(self, changes):
        self.changes.extend(changes)


@pytest.fixture
def coord(redis_client):
    made = []

    def make(agent_state=None, policy=SyncPolicy.IMMEDIATE, **kw):
        c = StateCoordinator(agent_state, policy, connection=redis_client, **kw)
        c.register_module("m1", None)
        c.register_module("m2", None)
        made.append(c)
        return c

    yield make
    for c in made:
        c.shutdown()


# --- validation ---------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["", "a..b", "__class__.x", "a._private", "1abc", "a-b", "a." * 20 + "a",
                                 "x" * 300, None, 5])
def test_bad_paths_are_refused_with_a_reason(bad):
    with pytest.raises(SecurityError) as err:
        validate_state_path(bad)
    assert str(err.value)


@pytest.mark.parametrize("bad", [object(), {1: "a"}, float("nan"), {"a": {1, 2}}])
def test_non_json_values_are_refused(bad):
    with pytest.raises(SecurityError):
        validate_state_value(bad)


def test_flattening_keeps_values_exact():
    value = {"a": {"b": 1 / 3, "c": [], "d": {}}, "odd key": 1, "e": [1, {"x": None}]}
    leaves = to_leaves({"root": value})
    assert from_leaves({k.partition(".")[2]: v for k, v in leaves.items()}) == value
    assert from_leaves({}) is MISSING


def test_agent_id_of():
    assert agent_id_of(Agent("Klaus")) == "Klaus"
    assert agent_id_of({"agent_id": "a7"}) == "a7"
    assert agent_id_of(None) == "default"
    assert agent_id_of(Agent(), agent_id="x") == "x"
    with pytest.raises(SecurityError):
        agent_id_of(types.SimpleNamespace(name="bad{tag}"))


# --- mirroring --------------------------------------------------------------------------
def test_object_is_mirrored_in_and_a_joiner_adopts_the_existing_truth(coord, redis_client):
    first = Agent()
    c1 = coord(first)
    c1.propose_change("m1", "emotional_state.happiness", 0.9)
    assert first.emotional_state["happiness"] == 0.9
    assert c1.get_state() == {"name": "Isabella Rodriguez", "emotional_state": {"happiness": 0.9, "stress": 0.2},
                              "goals": ["open the cafe"]}

    joiner = Agent()
    joiner.goals = ["something else"]
    joiner.hobby = "painting"  # new top-level attribute: contributed
    coord(joiner)
    assert joiner.emotional_state["happiness"] == 0.9  # Redis wins over the joiner's 0.5
    assert joiner.goals == ["open the cafe"]
    assert c1.get_value("hobby") == "painting"
    wait_until(lambda: getattr(first, "hobby", None) == "painting", message="first object sees hobby")
    assert isinstance(joiner.maze, object) and joiner._private == 1


def test_dict_agent_state_works(coord):
    state = {"name": "dict-agent", "mood": {"level": 1}}
    c = coord(state)
    c.propose_change("m1", "mood.level", 2)
    assert state["mood"]["level"] == 2
    assert c.agent_id == "dict-agent"


def test_redis_agent_state_reads_and_writes(coord, redis_client):
    coord(Agent("ra"))
    state = RedisAgentState("ra", connection=redis_client)
    assert state.name == "ra"
    assert state.emotional_state == {"happiness": 0.5, "stress": 0.2}
    assert state.get("emotional_state.stress") == 0.2
    version = state.set("emotional_state.stress", 0.4)
    assert state.get("emotional_state.stress") == 0.4 and state.path_version("emotional_state.stress") == version
    state.location = [1, 2]
    assert state.location == [1, 2] and "location" in state
    with pytest.raises(AttributeError):
        state.missing
    with pytest.raises(StateConflictError) as err:
        state.set("emotional_state.stress", 0.1, expected_version=version - 1)
    assert "emotional_state.stress" in err.value.paths
    with pytest.raises(SecurityError):
        state.set("__class__", 1)


# --- change types, conflicts, outcomes -------------------------------------------------------
def test_change_types(coord):
    c = coord(Agent("types"), SyncPolicy.IMMEDIATE)
    created = c.propose_change("m1", "plan.today", "work", StateChangeType.CREATE)
    again = c.propose_change("m1", "plan.today", "nap", StateChangeType.CREATE)
    assert c.get_change_status(created).status is ChangeStatus.APPLIED
    again_status = c.get_change_status(again)
    assert again_status.status is ChangeStatus.REJECTED and again_status.reason == "exists"
    c.propose_change("m1", "emotional_state", {"anger": 0.1}, StateChangeType.MERGE)
    assert c.get_value("emotional_state") == {"happiness": 0.5, "stress": 0.2, "anger": 0.1}
    c.propose_change("m1", "emotional_state.anger", None, StateChangeType.DELETE)
    missing = c.propose_change("m1", "emotional_state.anger", None, StateChangeType.DELETE)
    assert c.get_change_status(missing).reason == "missing"
    c.propose_change("m1", "emotional_state.happiness", 0.0)
    c.propose_change("m1", "emotional_state", None, StateChangeType.RESET)  # back to the baseline
    assert c.get_value("emotional_state") == {"happiness": 0.5, "stress": 0.2}
    c.propose_change("m1", "plan", None, StateChangeType.RESET)  # not in the baseline: removed
    assert c.get_value("plan") is None
    below_scalar = c.propose_change("m1", "name.first", "Isa")
    assert c.get_change_status(below_scalar).reason.startswith("not_object")
    assert c.get_value("name") == "types"
    with pytest.raises(ValueError):
        c.propose_change("m1", "goals", ["x"], StateChangeType.MERGE)
    with pytest.raises(ValueError):
        c.propose_change("unregistered", "goals", [])


def test_priority_conflict_and_every_outcome_reported(coord):
    c = coord(Agent("conflict"), SyncPolicy.BATCHED, batch_size=3)
    low = c.propose_change("m1", "emotional_state.happiness", 0.1, priority=1)
    high = c.propose_change("m2", "emotional_state.happiness", 0.9, priority=2)
    assert c.get_value("emotional_state.happiness") == 0.5  # batch not full yet
    other = c.propose_change("m1", "goals", ["b"], priority=0)  # third change: the batch applies
    assert c.get_value("emotional_state.happiness") == 0.9
    assert c.get_change_status(low).status is ChangeStatus.SUPERSEDED
    assert high in c.get_change_status(low).reason
    assert c.get_change_status(high).status is ChangeStatus.APPLIED
    assert c.get_change_status(other).status is ChangeStatus.APPLIED  # not dropped with the conflict
    assert c.get_state_metrics().conflicts_resolved == 1


def test_strategies(coord):
    c = coord(Agent("strategies"), SyncPolicy.ON_DEMAND)
    c.register_conflict_resolver("goals", "latest_wins")
    c.propose_change("m1", "goals", ["a"], priority=9)
    c.propose_change("m2", "goals", ["b"], priority=0)
    c.register_conflict_resolver("emotional_state", ConflictResolution("emotional_state", "priority", ["m2", "m1"]))
    c.propose_change("m1", "emotional_state.happiness", 0.1, priority=9)
    c.propose_change("m2", "emotional_state.happiness", 0.2, priority=0)
    c.register_conflict_resolver("traits", "merge")
    c.propose_change("m1", "traits", {"kind": True})
    c.propose_change("m2", "traits", {"shy": False})
    c.register_conflict_resolver("score", lambda changes: sum(ch.new_value for ch in changes))
    c.propose_change("m1", "score", 2)
    c.propose_change("m2", "score", 3)
    c.apply_changes()
    assert c.get_value("goals") == ["b"]
    assert c.get_value("emotional_state.happiness") == 0.2
    assert c.get_value("traits") == {"kind": True, "shy": False}
    assert c.get_value("score") == 5
    assert c.get_coordination_status()["pending_changes"] == 0
    with pytest.raises(ValueError):
        c.register_conflict_resolver("x", "coin_flip")


def test_expected_version_is_compare_and_set(coord):
    c = coord(Agent("cas"), SyncPolicy.IMMEDIATE)
    seen = c.get_version("emotional_state.happiness")
    ok = c.propose_change("m1", "emotional_state.happiness", 0.6, expected_version=seen)
    stale = c.propose_change("m2", "emotional_state.happiness", 0.7, expected_version=seen)
    assert c.get_change_status(ok).status is ChangeStatus.APPLIED
    outcome = c.get_change_status(stale)
    assert outcome.status is ChangeStatus.REJECTED and "version_conflict" in outcome.reason
    assert c.get_value("emotional_state.happiness") == 0.6
    # a write to the parent moves the child's version too
    c.propose_change("m1", "emotional_state", {"happiness": 0.1})
    assert c.get_version("emotional_state.happiness") > seen + 1


def test_fenced_writes_are_refused(coord, redis_client, monkeypatch):
    import piano_dist.state.coordinator as coordinator_module

    c = coord(Agent("fenced"))
    redis_client.set("test:fence", 7)
    monkeypatch.setattr(coordinator_module, "current_fence", lambda *a: ("test:fence", 6))
    with pytest.raises(FencedWriteRejected):
        c.propose_change("m1", "emotional_state.happiness", 0.0)
    c.begin_transaction("t")
    c.propose_change("m1", "goals", [])
    with pytest.raises(FencedWriteRejected):
        c.commit_transaction("t")
    assert c.rollback_transaction("t")
    assert c.get_value("emotional_state.happiness") == 0.5 and c.get_value("goals") == ["open the cafe"]
    monkeypatch.setattr(coordinator_module, "current_fence", lambda *a: ("test:fence", 7))
    c.propose_change("m1", "emotional_state.happiness", 0.0)
    assert c.get_value("emotional_state.happiness") == 0.0


# --- transactions ------------------------------------------------------------------------
def test_transaction_commit_rollback_and_abort(coord):
    agent = Agent("tx")
    c = coord(agent, SyncPolicy.IMMEDIATE)
    c.begin_transaction("goal_update")
    c.propose_change("m1", "goals", ["sleep"])
    c.propose_change("m1", "goal_progress", 0.0)
    assert c.get_value("goals") == ["open the cafe"]  # captured, not applied
    assert c.commit_transaction("goal_update")
    assert agent.goals == ["sleep"] and agent.goal_progress == 0.0

    c.begin_transaction("undo")
    c.propose_change("m1", "goals", ["never"])
    assert c.rollback_transaction("undo")
    assert c.get_value("goals") == ["sleep"]

    seen = c.get_version("goals")
    c.propose_change("m2", "goals", ["moved on"])  # someone else writes in between
    c.begin_transaction("stale")
    c.propose_change("m1", "goal_progress", 1.0)
    c.propose_change("m1", "goals", ["stale"], expected_version=seen)
    with pytest.raises(StateConflictError) as err:
        c.commit_transaction("stale")
    assert err.value.paths == ["goals"] and "goals" in str(err.value)
    assert c.get_value("goal_progress") == 0.0  # nothing of the transaction applied
    assert c.rollback_transaction("stale")  # the seed's except-branch still works

    c.begin_transaction("bad")
    c.propose_change("m1", "fresh", 1)
    c.propose_change("m1", "goals", None, StateChangeType.CREATE)
    with pytest.raises(StateWriteError):
        c.commit_transaction("bad")
    assert c.get_value("fresh") is None
    with pytest.raises(ValueError):
        c.commit_transaction("unknown")


# --- snapshots and notifications --------------------------------------------------------------
def test_snapshots_restore_notify_and_evict(coord):
    agent = Agent("snap")
    c = coord(agent, max_snapshots=3)
    watcher = Recorder()
    c.register_module("watcher", watcher)
    c.subscribe_to_path("watcher", "emotional_state")
    c.create_snapshot("checkpoint")
    c.propose_change("m1", "emotional_state.happiness", 0.1)
    c.propose_change("m1", "added_later", True)
    assert c.restore_snapshot("checkpoint")
    assert agent.emotional_state["happiness"] == 0.5
    assert not hasattr(agent, "added_later")  # the seed kept attributes added after the snapshot
    wait_until(lambda: len(watcher.changes) == 2, message="update + reset delivered")
    assert [ch.change_type for ch in watcher.changes] == [StateChangeType.UPDATE, StateChangeType.RESET]
    assert watcher.changes[1].new_value == {"happiness": 0.5, "stress": 0.2}
    assert watcher.changes[0].version < watcher.changes[1].version

    snap = c.get_snapshot("checkpoint")
    assert snap.state_data["emotional_state"]["happiness"] == 0.5 and snap.change_sequence > 0
    for i in range(4):
        c.create_snapshot(f"s{i}")
    assert c.list_snapshots() == ["s1", "s2", "s3"]
    with pytest.raises(UnknownSnapshotError):
        c.restore_snapshot("checkpoint")
    with pytest.raises(KeyError):
        c.restore_snapshot("nope")


def test_subscription_matches_subtrees_and_ancestors(coord):
    c = coord(Agent("subs"))
    watcher = Recorder()
    c.register_module("watcher", watcher)
    c.subscribe_to_path("watcher", "emotional_state.happiness")
    c.propose_change("m1", "emotional_state.happiness", 0.7)  # exact
    c.propose_change("m1", "emotional_state", {"happiness": 0.1})  # replaces the subscribed path
    c.propose_change("m1", "emotional_state.stress", 0.9)  # sibling: not delivered
    c.propose_change("m1", "goals", [])
    wait_until(lambda: len(watcher.changes) >= 2, message="deliveries")
    assert [ch.path for ch in watcher.changes] == ["emotional_state.happiness", "emotional_state"]
    assert "emotional_state.happiness" in c.subscriptions
    status = c.get_coordination_status()
    assert status["subscriptions"] == {"watcher": ["emotional_state.happiness"]}
    assert status["module_versions"]["watcher"] == 0


def test_periodic_policy_applies_on_its_own(coord):
    c = coord(Agent("periodic"), SyncPolicy.PERIODIC, sync_interval=0.05)
    change = c.propose_change("m1", "goals", ["later"])
    assert c.wait_for_change(change, timeout=5).status is ChangeStatus.APPLIED
    assert c.get_value("goals") == ["later"]


def test_on_demand_waits_for_apply_changes(coord):
    c = coord(Agent("ondemand"), SyncPolicy.ON_DEMAND)
    change = c.propose_change("m1", "goals", ["x"])
    assert c.get_change_status(change).status is ChangeStatus.PENDING
    assert c.get_value("goals") == ["open the cafe"]
    c.apply_changes()
    assert c.get_value("goals") == ["x"]
    assert json.loads(json.dumps(c.get_coordination_status()["snapshots"])) == ["initial"]


def test_mirroring_keeps_local_types_that_equal_the_stored_value(coord):
    agent = Agent("tuples")
    agent.curr_tile = (15, 20)
    coord(agent)
    assert agent.curr_tile == (15, 20) and isinstance(agent.curr_tile, tuple)
    joiner = Agent("tuples")
    joiner.curr_tile = (1, 1)
    coord(joiner)
    assert joiner.curr_tile == [15, 20]  # the stored truth wins


def test_seed_registration_surface(coord):
    c = coord(Agent("surface"))
    module = Recorder()
    c.register_module("test_module", module)
    assert c.registered_modules["test_module"] is module
    assert c.module_versions["test_module"] == 0
    c.unregister_module("test_module")
    with pytest.raises(KeyError):
        c.unregister_module("test_module")
    with pytest.raises(ValueError):
        c.subscribe_to_path("test_module", "goals")


def test_the_change_log_keeps_about_the_latest_thousand_changes_per_agent(redis_url, redis_client):
    from piano_dist.state import StateCoordinator
    from piano_dist.state.store import DEFAULT_LOG_MAXLEN

    coordinator = StateCoordinator(None, agent_id="long-lived", connection=redis_client)
    coordinator.register_module("m")
    for i in range(3 * DEFAULT_LOG_MAXLEN):
        coordinator.propose_change("m", "counter", i)
    length = redis_client.xlen(coordinator.store.log)
    assert DEFAULT_LOG_MAXLEN <= length < 2 * DEFAULT_LOG_MAXLEN  # MAXLEN ~ trims in whole nodes
    assert coordinator.get_value("counter") == 3 * DEFAULT_LOG_MAXLEN - 1
    coordinator.shutdown()


# --- how long outcomes stay -------------------------------------------------------------------
def _outcome_ttls(redis_client, agent_id):
    return [redis_client.ttl(k) for k in redis_client.scan_iter(f"piano:state:{{{agent_id}}}:change:*")]


def test_outcomes_stay_for_piano_state_outcome_ttl_or_the_coordinators_own(coord, redis_client, monkeypatch):
    """A long simulation bounds what its state changes leave in Redis: each applied change
    keeps an outcome record (~220 B) for a day unless told otherwise."""
    coord({"name": "ttl-default", "mood": 1}).propose_change("m1", "mood", 2)
    ttls = _outcome_ttls(redis_client, "ttl-default")
    assert ttls and all(t > 86_000 for t in ttls)
    monkeypatch.setenv("PIANO_STATE_OUTCOME_TTL", "120")
    coord({"name": "ttl-env", "mood": 1}).propose_change("m1", "mood", 2)
    ttls = _outcome_ttls(redis_client, "ttl-env")
    assert ttls and all(0 < t <= 120 for t in ttls)
    coord({"name": "ttl-own", "mood": 1}, outcome_ttl=60.0).propose_change("m1", "mood", 2)  # its own wins
    ttls = _outcome_ttls(redis_client, "ttl-own")
    assert ttls and all(0 < t <= 60 for t in ttls)


@pytest.mark.parametrize("env, own, named", [("0", None, "PIANO_STATE_OUTCOME_TTL"),
                                             ("soon", None, "PIANO_STATE_OUTCOME_TTL"),
                                             ("-5", None, "PIANO_STATE_OUTCOME_TTL"),
                                             ("²", None, "PIANO_STATE_OUTCOME_TTL"),
                                             (None, 34, "outcome_ttl"), (None, 35.5, "outcome_ttl"),
                                             (None, True, "outcome_ttl"), (None, 2**31, "outcome_ttl")])
def test_an_outcome_ttl_that_is_not_whole_seconds_in_range_is_refused(redis_client, monkeypatch, env, own, named):
    if env is not None:
        monkeypatch.setenv("PIANO_STATE_OUTCOME_TTL", env)
    # Never shorter than a write may be repeated: a 5 s socket timeout and 30 s of retries.
    with pytest.raises(ValueError, match=f"{named} must be whole seconds from 35 "):
        StateCoordinator({"name": "ttl-bad"}, connection=redis_client, outcome_ttl=own)


# --- how outcomes are stored --------------------------------------------------------------------
def test_an_outcome_is_one_short_string_and_keeps_no_proposal(coord, redis_client):
    """A long simulation keeps one outcome per change: a JSON array string in one
    allocation, not a hash that also kept the proposal's value (its leaves)."""
    c = coord({"name": "compact", "mood": 1}, SyncPolicy.ON_DEMAND)
    change = c.propose_change("m1", "mood", "x" * 500)
    key = c.store.change_prefix + change
    assert redis_client.type(key) == b"hash"  # pending: the proposal itself
    assert c.get_change_status(change).status is ChangeStatus.PENDING
    c.apply_changes()
    assert redis_client.type(key) == b"string"
    assert json.loads(redis_client.get(key)) == ["applied", "", 3, "mood", "m1"]  # name, mood, then this
    assert 0 < redis_client.ttl(key) <= 86_400
    outcome = c.get_change_status(change)
    assert (outcome.status, outcome.version, outcome.path, outcome.module_id) == (ChangeStatus.APPLIED, 3, "mood", "m1")


def test_an_outcome_an_earlier_version_stored_as_a_hash_is_still_read(coord, redis_client):
    c = coord({"name": "old-outcome", "mood": 1})
    key = c.store.change_prefix + "c-old"
    redis_client.hset(key, mapping={"status": "applied", "reason": "", "version": "7", "path": "mood",
                                    "module": "m1", "done_ts": "1"})
    outcome = c.get_change_status("c-old")
    assert (outcome.status, outcome.version, outcome.module_id) == (ChangeStatus.APPLIED, 7, "m1")
    # a transaction repeated after its reply was lost finds it applied either way
    assert c.store.apply_atomic([{"id": "c-old", "module": "m1", "path": "mood", "type": "update",
                                  "leaves": {"": "2"}, "priority": 0, "meta": "{}", "tx": ""}]) == [("c-old", 7)]
    assert c.get_value("mood") == 1  # nothing applied twice
    assert c.get_change_status("no-such-change") is None


@pytest.mark.parametrize("junk", [b"[", b'["applied"]', b'{"status": "applied"}', b'["done", "", 1, "a", "m"]',
                                  b'["applied", "", 1.5, "a", "m"]', b'["applied", 3, 1, "a", "m"]'])
def test_an_outcome_record_that_is_not_ours_is_refused_by_name(coord, redis_client, junk):
    c = coord({"name": "junk-outcome"})
    redis_client.set(c.store.change_prefix + "c-junk", junk)
    with pytest.raises(StateWriteError, match="outcome record of change 'c-junk' is not one piano-dist wrote"):
        c.get_change_status("c-junk")


def test_a_pending_id_whose_record_is_not_a_proposal_is_dropped_not_an_error(coord, redis_client):
    c = coord({"name": "stray-pending", "mood": 1}, SyncPolicy.ON_DEMAND)
    real = c.propose_change("m1", "mood", 2)
    redis_client.zadd(c.store.pending, {"stray": 0})
    redis_client.set(c.store.change_prefix + "stray", '["applied", "", 1, "mood", "m1"]')
    assert [ch.change_id for ch in c.store.pending_changes()] == [real]
    c.apply_changes()
    assert c.get_value("mood") == 2 and c.store.pending_count() == 0


def test_a_restore_rejects_pending_changes_with_compact_outcomes(coord, redis_client):
    c = coord({"name": "restore-outcome", "mood": 1}, SyncPolicy.ON_DEMAND)
    snap = c.create_snapshot()
    change = c.propose_change("m2", "mood", 5)
    assert c.restore_snapshot(snap)
    assert json.loads(redis_client.get(c.store.change_prefix + change)) == [
        "rejected", f"snapshot_restored: {snap}", None, "mood", "m2"]
    assert c.get_change_status(change).status is ChangeStatus.REJECTED


def test_a_proposal_sent_again_after_its_change_was_decided_stores_nothing(coord, redis_client):
    """Its reply lost, the proposal is sent again after another process applied the batch:
    the record is an outcome by then, and the repeat neither fails on it (WRONGTYPE) nor
    makes the change pending a second time."""
    c = coord({"name": "repeat-propose", "mood": 1}, SyncPolicy.ON_DEMAND)
    change = c.propose_change("m1", "mood", 2)
    record = {k.decode(): v.decode() for k, v in redis_client.hgetall(c.store.change_prefix + change).items()}
    record.pop("seq"), record.pop("status")
    c.apply_changes()
    assert c.store.propose(change, record) == (0, 0)
    assert c.get_change_status(change).status is ChangeStatus.APPLIED and c.store.pending_count() == 0
    redis_client.delete(c.store.change_prefix + change)
    redis_client.hset(c.store.change_prefix + change, mapping={"status": "applied", "version": "3"})  # an earlier version's
    assert c.store.propose(change, record) == (0, 0)
    assert c.get_value("mood") == 2
