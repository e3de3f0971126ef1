"""Planning (goals, plan and decision through the StateCoordinator), reflection (the
importance trigger, thoughts stored) and retrieval (the three scores)."""
import threading
from datetime import datetime, timedelta

import pytest

from piano_dist.enhanced_modules import (ConcurrentPlanningModule, DistributedReflectionModule,
                                         MemoryRetrievalModule)
from piano_dist.llm import FakeLLM
from piano_dist.memory import AssociativeMemory
from piano_dist.state import RedisAgentState


class BarrierLLM(FakeLLM):
    """Completes only when ``parties`` calls are waiting at once: proof of concurrency
    without timing."""

    def __init__(self, parties):
        super().__init__(median_latency=0)
        self.barrier = threading.Barrier(parties, timeout=10)

    def complete(self, prompt, **kw):
        self.barrier.wait()
        return super().complete(prompt, **kw)


def test_planning_plans_goals_concurrently_and_publishes_the_decision(redis_client):
    planner = ConcurrentPlanningModule(None, max_concurrent_goals=3, agent_id="alice", llm=FakeLLM(median_latency=0),
                                       connection=redis_client)
    planner.add_goal("open the cafe", priority=0.9)
    planner.add_goal("paint a portrait", priority=0.5)
    planner.add_goal("call Klaus", priority=0.7)
    planner.add_goal("tidy the shelf", priority=0.1)
    planner.llm = BarrierLLM(3)  # the three top goals must be planned at the same time
    outcome = planner.run()
    state = RedisAgentState("alice", connection=redis_client)  # what any other process reads
    assert outcome["goal"] == "open the cafe"
    assert state.act_description == outcome["decision"] == state.current_plan["steps"][0]
    assert len(state.current_plan["plans"]) == 3 and len(state.current_plan["steps"]) == 4
    assert [g["status"] for g in state.goals] == ["planned", "planned", "planned", "active"]
    # Advancing walks the steps; the last one completes the goal.
    for step in state.current_plan["steps"][1:]:
        assert planner.advance()["decision"] == step
        assert state.act_description == step
    assert planner.advance()["completed_goal"] == state.goals[0]["id"]
    assert state.goals[0]["status"] == "completed" and state.act_description is None
    planner.shutdown()


def test_planning_uses_a_given_state_coordinator(redis_client):
    from piano_dist.state import StateCoordinator

    coordinator = StateCoordinator(None, connection=redis_client, agent_id="bob")
    seen = []

    class Listener:
        def on_state_change(self, changes):
            seen.extend(changes)

    listener = Listener()
    coordinator.register_module("listener", listener)
    coordinator.subscribe_to_path("listener", "act_description")
    planner = ConcurrentPlanningModule(None, agent_id="bob", llm=FakeLLM(median_latency=0),
                                       state_coordinator=coordinator)
    planner.add_goal("water the garden")
    decision = planner.run()["decision"]
    assert coordinator.get_value("act_description") == decision
    from support.waiting import wait_until

    wait_until(lambda: seen, message="the subscriber to hear about the decision")
    coordinator.shutdown()


def add_event(memory, text, poignancy, when=None):
    return memory.add_event(when or datetime.now(), None, text.split()[0], "is", text, text,
                            text.lower().split(), poignancy, None, None)


def test_reflection_waits_for_enough_importance_then_stores_thoughts(redis_client):
    memory = AssociativeMemory(agent_id="alice", connection=redis_client)
    reflection = DistributedReflectionModule(None, importance_threshold=20, focal_points=2, agent_id="alice",
                                             llm=FakeLLM(median_latency=0), connection=redis_client)
    add_event(memory, "alice drinks coffee at the cafe", 3)
    add_event(memory, "alice sees the sunrise", 4)
    quiet = reflection.run()
    assert quiet["reflected"] is False and quiet["importance"] == 7
    assert not memory.seq_thought
    add_event(memory, "klaus tells alice he is moving away", 9)
    add_event(memory, "alice argues with klaus about the cafe", 8)
    assert reflection.should_reflect()
    outcome = reflection.run()
    assert outcome["reflected"] is True and outcome["importance"] == 24
    thoughts = memory.seq_thought
    assert len(thoughts) == len(outcome["thoughts"]) == 2
    event_ids = {n.node_id for n in memory.seq_event}
    for thought in thoughts:
        assert thought.depth == 1 and thought.filling and set(thought.filling) <= event_ids
        assert thought.subject == "alice" and 1 <= thought.poignancy <= 10
    # The cursor moved past the new thoughts: nothing new, no reflection.
    assert reflection.importance_since_last() == 0 and reflection.run()["reflected"] is False


def test_one_reflection_at_a_time_per_agent(redis_client):
    reflection = DistributedReflectionModule(None, agent_id="alice", llm=None, connection=redis_client)
    import redis_lock

    lock = redis_lock.Lock(redis_client, reflection.keys.reflection_key("alice", "running"), expire=30)
    assert lock.acquire(blocking=False)
    try:
        assert reflection.run(force=True) == {
            "agent_id": "alice", "reflected": False, "reason": "another reflection is running",
            "importance": 0.0, "threshold": 30.0}
    finally:
        lock.release()


@pytest.fixture
def three_memories(redis_client):
    """old + poignant + off-topic; middle-aged + dull + on-topic; newest + dull + off-topic."""
    memory = AssociativeMemory(agent_id="alice", connection=redis_client)
    now = datetime.now()
    add_event(memory, "alice won the painting prize", 9, now - timedelta(hours=3))
    add_event(memory, "bob makes coffee at the cafe", 1, now - timedelta(hours=2))
    add_event(memory, "carol walks the dog", 1, now - timedelta(hours=1))
    return memory


@pytest.mark.parametrize("weights, best", [
    ((0, 1, 0), "alice won the painting prize"),   # importance
    ((0, 0, 1), "bob makes coffee at the cafe"),   # relevance to the query
    ((1, 0, 0), "carol walks the dog"),            # recency
])
def test_retrieval_ranks_by_each_score(redis_client, three_memories, weights, best):
    retrieval = MemoryRetrievalModule(None, n=3, weights=weights, agent_id="alice", mark_accessed=False,
                                      connection=redis_client)
    found = retrieval.retrieve("coffee at the cafe")
    assert found[0]["description"] == best
    assert [f["score"] for f in found] == sorted((f["score"] for f in found), reverse=True)


def test_retrieval_combines_the_scores_and_returns_json(redis_client, three_memories):
    import json

    retrieval = MemoryRetrievalModule(None, n=2, agent_id="alice", connection=redis_client)
    outcome = retrieval.run(["coffee at the cafe", "painting prize"])
    assert json.loads(json.dumps(outcome)) == outcome
    for hits in outcome["results"].values():
        assert len(hits) == 2
        for hit in hits:
            expected = 0.5 * hit["recency"] + 3 * hit["importance"] + 2 * hit["relevance"]
            assert hit["score"] == pytest.approx(expected, abs=1e-5)
    assert outcome["results"]["painting prize"][0]["description"] == "alice won the painting prize"
    # With embeddings (FakeLLM's hashed bag of words) relevance still finds the cafe.
    embedded = MemoryRetrievalModule(None, n=1, weights=(0, 0, 1), use_embeddings=True, agent_id="alice",
                                     llm=FakeLLM(median_latency=0), connection=redis_client)
    assert embedded.retrieve("coffee")[0]["relevance"] >= 0


def test_the_reflection_trigger_is_one_read_however_long_the_agent_has_lived(redis_client):
    memory = AssociativeMemory(agent_id="old", connection=redis_client)
    memory.add_many([("event", datetime.now(), None, "old", "is", "busy", f"chore {i}", ["chore"], 1, None, None)
                     for i in range(3000)])
    reflection = DistributedReflectionModule(None, importance_threshold=10_000, agent_id="old", llm=None,
                                             connection=redis_client)
    before = {k: v["calls"] for k, v in redis_client.info("commandstats").items()}
    assert reflection.importance_since_last() == 3000
    after = {k: v["calls"] for k, v in redis_client.info("commandstats").items()}
    spent = {k: after[k] - before.get(k, 0) for k in after if k != "cmdstat_info" and after[k] != before.get(k, 0)}
    assert spent == {"cmdstat_mget": 1}


def test_planning_writes_the_goals_only_when_they_change(redis_client):
    planner = ConcurrentPlanningModule(None, max_concurrent_goals=1, agent_id="carl", llm=FakeLLM(median_latency=0),
                                       connection=redis_client)
    planner.add_goal("bake bread")
    planner.run()  # the goal becomes "planned": goals, plan and decision written
    coordinator = planner.state.coordinator
    before = coordinator.get_version("goals")
    planner.run()  # nothing about the goals changed: only the plan and the decision
    assert coordinator.get_version("goals") == before
    assert coordinator.get_version("current_plan") > before
    planner.shutdown()


def test_a_decision_is_written_in_one_round_trip_and_returns_the_version_after_it(redis_client, monkeypatch):
    """Planning's writes (several paths, one transaction) cost one round trip: the
    version comes back with the commit, not from another read."""
    import threading

    import redis as redis_lib

    from piano_dist.enhanced_modules.state_access import AgentStateAccess
    from piano_dist.state import StateCoordinator

    coordinator = StateCoordinator(None, connection=redis_client, agent_id="carol")
    access = AgentStateAccess(None, "carol", "planner", redis_client, None, coordinator=coordinator)
    access.write({"goal": "bake bread"})
    sends = []
    original = redis_lib.connection.AbstractConnection.send_packed_command

    def counting(self, command, check_health=True):
        if threading.get_ident() == caller:  # the coordinator's own threads are not the write
            sends.append(command)
        return original(self, command, check_health)

    caller = threading.get_ident()

    monkeypatch.setattr(redis_lib.connection.AbstractConnection, "send_packed_command", counting)
    version = access.write({"goal": "sell bread", "plan": ["bake", "sell"]})
    monkeypatch.undo()
    assert len(sends) == 1
    assert version == coordinator.state_version == 3
    assert coordinator.get_value("plan") == ["bake", "sell"]
    assert access.write({}) == 3
    coordinator.shutdown()
