"""Behaviours of the Redis-backed memories, a sample of each (against the private Redis)."""
import pickle
import time
from datetime import datetime, timedelta

import pytest

from piano_dist.errors import FencedWriteRejected, SecurityError
from piano_dist.memory import (
    AssociativeMemory, CircularBuffer, EpisodeType, EpisodicMemory, SemanticMemory, TemporalMemory,
)
from piano_dist.memory import fencing


class FakeClock:
    def __init__(self, now):
        self.now = now

    def time(self):
        return self.now


# --- CircularBuffer ---------------------------------------------------------------------
def test_buffer_keeps_the_newest_max_size_and_reads_newest_first(redis_url):
    buf = CircularBuffer(max_size=3)
    ids = [buf.add_memory(f"m{i}", importance=i / 10)["id"] for i in range(5)]
    assert len(buf) == 3
    assert [m["content"] for m in buf.get_recent_memories(10)] == ["m4", "m3", "m2"]
    assert buf.ids() == ids[2:]
    assert buf.get_recent_memories(0) == []  # the seed returned everything here
    assert buf.get_memory_summary()["buffer_utilization"] == 1.0


def test_buffer_filters_by_type_importance_and_text(redis_url):
    buf = CircularBuffer(max_size=10)
    buf.add_memory("Isabella greets Klaus", "social", 0.9, {"who": ["Klaus"]})
    buf.add_memory("coffee is brewing", "event", 0.2)
    assert [m["content"] for m in buf.get_memories_by_type("social")] == ["Isabella greets Klaus"]
    assert [m["content"] for m in buf.get_important_memories(0.7)] == ["Isabella greets Klaus"]
    assert [m["metadata"] for m in buf.search_memories("KLAUS")] == [{"who": ["Klaus"]}]
    assert buf.get_memory_summary()["memory_types"] == {"social": 1, "event": 1}


def test_buffer_expires_memories_past_retention(redis_url, monkeypatch):
    clock = FakeClock(1_000_000.0)
    monkeypatch.setattr("piano_dist.memory.circular_buffer.time", clock)
    buf = CircularBuffer(max_size=10, retention_minutes=1)
    buf.add_memory("old")
    clock.now += 61
    assert buf.get_recent_memories(5) == []  # expired entries are never returned
    assert buf.cleanup_expired_memories() == 1
    buf.add_memory("new")
    assert [m["content"] for m in buf.get_recent_memories(5)] == ["new"]


def test_bad_input_is_refused_and_nothing_stored_is_lost(redis_url):
    buf = CircularBuffer(max_size=2)
    buf.add_memory("keep me")
    for bad in (dict(content="<script>x</script>"), dict(content="ok", importance=2),
                dict(content="ok", metadata={"f": object()})):
        with pytest.raises(SecurityError):
            buf.add_memory(**bad)
    assert [m["content"] for m in buf.get_recent_memories(5)] == ["keep me"]


def test_instances_with_the_same_agent_share_one_memory(redis_url):
    CircularBuffer(agent_id="isabella").add_memory("shared")
    assert [m["content"] for m in CircularBuffer(agent_id="isabella").get_recent_memories()] == ["shared"]
    assert CircularBuffer(agent_id="klaus").get_recent_memories() == []
    assert CircularBuffer(agent_id="isabella", name="other").get_recent_memories() == []


def test_memories_pickle_to_the_same_store(redis_url):
    buf = CircularBuffer(max_size=7, agent_id="a1")
    buf.add_memory("x")
    copy = pickle.loads(pickle.dumps(buf))
    assert copy.max_size == 7 and [m["content"] for m in copy.get_recent_memories()] == ["x"]


# --- TemporalMemory ---------------------------------------------------------------------
def test_temporal_strength_decays_and_only_explicit_access_raises_it(redis_url):
    mem = TemporalMemory(decay_rate=0.5)
    now = time.time()
    mid = mem.add_memory("two hours ago", importance=0.8, timestamp=now - 7200)
    assert mem.get_memory_strength(mid, now) == pytest.approx(0.8 * 2.718281828 ** -1, rel=1e-3)
    mem.retrieve_memories_by_timerange(now - 10_000, now, min_strength=0.0)
    assert mem.get_memory_strength(mid, now) == pytest.approx(0.8 * 2.718281828 ** -1, rel=1e-3)
    mem.mark_accessed([mid])
    assert mem.get_memory_strength(mid, now) == pytest.approx(0.8 * 2.718281828 ** -1 + 0.1, rel=1e-3)
    assert mem.get_memory_strength("temp_mem_999") == 0.0


def test_temporal_range_includes_both_ends_and_filters(redis_url):
    mem = TemporalMemory()
    base = datetime.now().replace(microsecond=0) - timedelta(minutes=30)
    for minutes, kind in ((0, "event"), (10, "chat"), (20, "event")):
        mem.add_memory(f"at {minutes}", kind, 0.9, timestamp=base + timedelta(minutes=minutes))
    found = mem.retrieve_memories_by_timerange(base, base + timedelta(minutes=20))
    assert [m["content"] for m in found] == ["at 0", "at 10", "at 20"]
    assert [m["content"] for m in mem.retrieve_memories_by_timerange(
        base, base + timedelta(minutes=20), memory_type="event")] == ["at 0", "at 20"]
    assert [m["content"] for m in mem.retrieve_recent_memories(hours_back=1, limit=2)] == ["at 20", "at 10"]
    # All three are on base's day unless the test runs within 30 minutes after midnight.
    same_day = sum((base + timedelta(minutes=m)).date() == base.date() for m in (0, 10, 20))
    assert len(mem.retrieve_memories_by_pattern("same_day", base)) == same_day


def test_temporal_cleanup_applies_retention_and_bound(redis_url):
    mem = TemporalMemory(retention_hours=1, max_memories=3)
    now = time.time()
    for i in range(4):
        mem.add_memory(f"m{i}", importance=0.9, timestamp=now - 3000 + i)
    assert len(mem) == 3  # the oldest went on the fourth add
    assert mem.cleanup_expired_memories(current_time=now + 700) == 3
    assert len(mem) == 0


# --- EpisodicMemory ---------------------------------------------------------------------
def test_coherent_events_share_an_episode_and_unknown_places_do_not_match(redis_url):
    mem = EpisodicMemory(max_episodes=10)
    a = mem.add_event("Isabella greets Klaus", "conversation", 0.6,
                      participants=["Isabella", "Klaus"], location="Hobbs Cafe")
    b = mem.add_event("Klaus asks about the party", "conversation", 0.8,
                      participants=["Klaus", "Isabella"], location="Hobbs Cafe")
    assert mem.get_event(a)["episode_id"] == mem.get_event(b)["episode_id"]
    # five unrelated events without location or participants: five episodes (the seed made one)
    loose = [mem.add_event(f"noise {i}", "activity") for i in range(5)]
    assert len({mem.get_event(e)["episode_id"] for e in loose}) == 5
    episode = mem.get_episode(mem.get_event(a)["episode_id"])
    assert episode.episode_type == EpisodeType.CONVERSATION and episode.importance == 0.8
    assert sorted(episode.participants) == ["Isabella", "Klaus"]
    assert "Klaus asks about the party" in mem.get_episode_narrative(episode.episode_id)


def test_get_recent_episodes_honours_hours_back(redis_url):
    mem = EpisodicMemory()
    mem.add_event("yesterday", "activity", timestamp=time.time() - 86_400)
    mem.add_event("just now", "activity")
    assert [e.summary for e in mem.get_recent_episodes()] == ["just now"]
    assert [e.summary for e in mem.get_recent_episodes(hours_back=48)] == ["just now", "yesterday"]
    assert mem.get_episodes_by_type("activity") and mem.get_episodes_by_participant("nobody") == []


def test_evicting_an_episode_removes_its_events_and_causal_links(redis_url):
    mem = EpisodicMemory(max_episodes=2)
    first = mem.add_event("first", "activity", timestamp=time.time() - 7200)
    second = mem.add_event("second", "decision", timestamp=time.time() - 3600)
    mem.add_causal_relation(first, second, "causes")
    assert [r["target"] for r in mem.get_causal_relations(first)] == [second]
    mem.add_event("third", "routine")
    assert len(mem) == 2 and mem.get_event(first) is None and mem.get_causal_relations(first) == []
    with pytest.raises(KeyError):
        mem.add_causal_relation(first, second, "causes")


# --- SemanticMemory ---------------------------------------------------------------------
def test_semantic_upserts_by_name_and_spreads_activation(redis_url):
    mem = SemanticMemory(activation_decay=0.0)
    cafe = mem.add_concept("Hobbs Cafe", "place", "a cafe", importance=0.1)
    assert mem.add_concept("hobbs cafe", "place", "the cafe", importance=0.1) == cafe
    mem.add_concept("Isabella", "person", "runs the cafe", importance=0.1)
    mem.add_concept("Coffee", "object", "a drink", importance=0.1)
    mem.add_relation("Isabella", "Hobbs Cafe", "located_at", strength=1.0)
    mem.add_relation("Hobbs Cafe", "coffee", "used_for", strength=1.0)
    with pytest.raises(ValueError, match="nobody"):
        mem.add_relation("nobody", "Coffee", "knows")
    mem.activate_concept("Isabella", 0.5)
    assert mem.get_activation("Isabella") == pytest.approx(0.6)
    assert mem.get_activation("Hobbs Cafe") == pytest.approx(0.1 + 0.5 * 0.8)
    assert mem.get_activation("Coffee") == pytest.approx(0.1 + 0.5 * 0.8 * 0.8)
    assert [c["name"] for c in mem.retrieve_by_activation(0.3)] == ["Isabella", "hobbs cafe", "Coffee"]
    assert [c["name"] for c in mem.retrieve_by_association(["Isabella"])] == ["hobbs cafe", "Coffee"]
    assert mem.retrieve_by_similarity("a drink", 1)[0]["name"] == "Coffee"
    assert [c["name"] for c in mem.retrieve_by_type("person")] == ["Isabella"]


def test_semantic_evicts_the_least_active_concept_with_its_relations(redis_url):
    mem = SemanticMemory(max_concepts=2)
    mem.add_concept("weak", "object", importance=0.1)
    mem.add_concept("strong", "object", importance=0.9)
    mem.add_relation("weak", "strong", "related_to")
    mem.add_concept("newcomer", "object", importance=0.5)
    assert sorted(c["name"] for c in mem.retrieve_by_type("object")) == ["newcomer", "strong"]
    assert mem.relation_count() == 0 and mem.get_concept_relationships("strong") == []


# --- fencing ----------------------------------------------------------------------------
MAKERS = [
    (lambda: CircularBuffer(), lambda m: m.add_memory("late write"), len),
    (lambda: TemporalMemory(), lambda m: m.add_memory("late write"), len),
    (lambda: EpisodicMemory(), lambda m: m.add_event("late write", "activity"), lambda m: m.event_count()),
    (lambda: SemanticMemory(), lambda m: m.add_concept("late", "object"), len),
    (lambda: AssociativeMemory(), lambda m: m.add_event("late write", 0.5), len),
]


@pytest.mark.parametrize("make, write, size", MAKERS)
def test_a_write_with_a_stale_fencing_token_is_refused(redis_url, redis_client, monkeypatch, make, write, size):
    memory = make()
    monkeypatch.setattr(fencing, "current_fence", lambda rid: ("test:fence", 5) if rid == memory.resource_id else None)
    redis_client.set("test:fence", 5)
    write(memory)  # our token is the newest: accepted
    redis_client.set("test:fence", 6)  # someone was granted the lock after us
    with pytest.raises(FencedWriteRejected, match=memory.resource_id):
        write(memory)
    assert size(memory) == 1


def test_memory_registered_with_the_resource_coordinator_is_fenced(redis_url, redis_client):
    from piano_dist.resources import AccessMode, ResourceCoordinator, ResourceType
    coordinator = ResourceCoordinator(default_timeout=5)
    memory = EpisodicMemory(max_episodes=20)
    coordinator.register_resource("episodic_memory", memory, ResourceType.EPISODIC_MEMORY)
    try:
        with coordinator.acquire_context("episodic_memory", AccessMode.WRITE, "perception") as held:
            held.add_event("seen under the lock", "perception", 0.7)
            redis_client.incr(coordinator.keys.resource_fence("episodic_memory"))  # a newer grant
            with pytest.raises(FencedWriteRejected):
                held.add_event("after losing the lock", "perception", 0.7)
        with coordinator.acquire_context("episodic_memory", AccessMode.READ, "retrieval") as held:
            assert [e.summary for e in held.get_recent_episodes(hours_back=1)] == ["seen under the lock"]
    finally:
        coordinator.shutdown()
