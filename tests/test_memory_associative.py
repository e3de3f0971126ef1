"""The a_mem adapter: generative-agents signatures round-trip, retrieval ranks by the
three normalised scores with weights (0.5, 3, 2)."""
from datetime import datetime, timedelta

import pytest

from piano_dist.errors import SecurityError
from piano_dist.memory import AssociativeMemory

T0 = datetime(2023, 2, 13, 9, 0)


def event(mem, minutes, description, keywords, poignancy, vector=None, s="Isabella Rodriguez", p="is", o="x"):
    pair = (description, vector) if vector is not None else None
    return mem.add_event(T0 + timedelta(minutes=minutes), None, s, p, o, description, set(keywords),
                         poignancy, pair, [])


def test_a_smallville_event_round_trips_all_ten_fields(redis_url):
    mem = AssociativeMemory(agent_id="Isabella Rodriguez")
    chat = mem.add_chat(T0, T0 + timedelta(days=30), "Isabella Rodriguez", "chat with", "Klaus Mueller",
                        "conversing about the Valentine's party", {"Isabella Rodriguez", "Klaus Mueller"}, 4,
                        ("conversing about the Valentine's party", [0.1, 0.2]),
                        [["Isabella Rodriguez", "Hi Klaus!"], ["Klaus Mueller", "Hello"]])
    node = mem.add_event(T0 + timedelta(minutes=1), T0 + timedelta(days=1), "Isabella Rodriguez", "is",
                         "brewing coffee", "Isabella Rodriguez is brewing coffee",
                         {"Isabella Rodriguez", "Coffee"}, 3, ("Isabella Rodriguez is brewing coffee", [0.3, 0.4]),
                         [chat.node_id])
    stored = mem.get_node(node.node_id)
    assert (stored.created, stored.expiration) == (T0 + timedelta(minutes=1), T0 + timedelta(days=1))
    assert stored.spo_summary() == ("Isabella Rodriguez", "is", "brewing coffee")
    assert stored.description == "Isabella Rodriguez is brewing coffee"
    assert stored.keywords == {"isabella rodriguez", "coffee"}  # lower-cased, as the original
    assert stored.poignancy == 3 and stored.filling == [chat.node_id]
    assert stored.embedding_key == "Isabella Rodriguez is brewing coffee"
    assert mem.get_embedding(stored.embedding_key) == [0.3, 0.4]
    assert (stored.node_type, stored.type, stored.node_count, stored.type_count) == ("event", "event", 2, 1)
    assert stored == node and mem.seq_event == [node]
    assert mem.get_last_chat("KLAUS MUELLER").filling[0] == ["Isabella Rodriguez", "Hi Klaus!"]
    assert mem.get_last_chat("nobody") is None
    assert mem.retrieve_relevant_events("Isabella Rodriguez", "is", "nothing") == {node}
    assert mem.get_summarized_latest_events(5) == {("Isabella Rodriguez", "is", "brewing coffee")}
    assert mem.kw_strength_event == {"isabella rodriguez": 1, "coffee": 1}
    thought = mem.add_thought(T0, None, "Isabella Rodriguez", "plans", "party", "Isabella plans a party",
                              {"party"}, 8, None, [node.node_id])
    assert thought.depth == 1 and mem.retrieve_relevant_thoughts("party", None, None) == {thought}


def test_the_migration_guide_short_form(redis_url):
    node = AssociativeMemory().add_event("Klaus stopped by the cafe", 0.6)
    assert node.description == "Klaus stopped by the cafe" and node.poignancy == pytest.approx(6.0)
    with pytest.raises(SecurityError, match="poignancy"):
        AssociativeMemory().add_event(T0, None, "a", "b", "c", "d", {"k"}, 11, None, [])


def test_importance_decides_when_relevance_ties(redis_url):
    mem = AssociativeMemory()
    old_poignant = event(mem, 0, "old poignant cafe memory", ["cafe"], 9)
    event(mem, 5, "new dull cafe memory", ["cafe"], 1)
    ranked = mem.retrieve_scored("cafe", 2)
    assert ranked[0].node == old_poignant
    assert (ranked[0].recency, ranked[0].importance, ranked[0].relevance) == (0.0, 1.0, 0.5)


def test_relevance_decides_when_importance_ties(redis_url):
    mem = AssociativeMemory()
    relevant = event(mem, 0, "old relevant", ["garden"], 5, vector=[1.0, 0.0])
    event(mem, 5, "new unrelated", ["tax"], 5, vector=[0.0, 1.0])
    assert mem.retrieve("anything", 1, embedding=[1.0, 0.0]) == [relevant]
    # without embeddings, keyword overlap stands in for cosine
    assert mem.retrieve("the garden", 1) == [relevant]


def test_recency_decides_when_the_rest_ties_and_retrieval_refreshes_it(redis_url):
    mem = AssociativeMemory()
    older = event(mem, 0, "walk in the park", ["park"], 5)
    newer = event(mem, 5, "walk in the park again", ["park"], 5)
    assert mem.retrieve_scored("park", 2)[0].node == newer
    mem.mark_accessed([older.node_id], when=T0 + timedelta(hours=1))  # as retrieve() does
    assert mem.retrieve("park", 2) == [older, newer]


def test_weights_and_several_focal_points(redis_url):
    mem = AssociativeMemory()
    poignant = event(mem, 0, "poignant", ["a"], 9, vector=[0.0, 1.0])
    relevant = event(mem, 1, "relevant", ["b"], 1, vector=[1.0, 0.0])
    found = mem.retrieve(["q1", "q2"], 1, embedding={"q1": [1.0, 0.0], "q2": [0.0, 1.0]}, mark_accessed=False)
    assert found == {"q1": [poignant], "q2": [poignant]}  # importance weighs 3 against relevance 2
    assert mem.retrieve("q", 1, embedding=[1.0, 0.0], weights=(0, 1, 5)) == [relevant]


def test_idle_nodes_and_chats_are_not_retrieved_and_eviction_cleans_indexes(redis_url, redis_client):
    mem = AssociativeMemory(max_nodes=2)
    mem.add_event(T0, None, "Isabella", "is", "idle", "Isabella is idle", {"idle"}, 1, ("idle", [1.0]), [])
    kept = event(mem, 1, "kept", ["k"], 2, vector=[1.0])
    assert mem.retrieve("kept", 5) == [kept]
    event(mem, 2, "newest", ["n"], 2, vector=[1.0])
    assert len(mem) == 2 and mem.kw_strength_event == {"k": 1, "n": 1}
    assert mem.get_embedding("idle") is None
    assert not redis_client.keys("*:kw:event:idle")


def _calls(client):
    return {k: v["calls"] for k, v in client.info("commandstats").items()}


def test_several_nodes_are_one_write_and_a_dedupe_key_adds_once(redis_url, redis_client):
    mem = AssociativeMemory(agent_id="a")
    before = _calls(redis_client)
    nodes = mem.add_many([("event", T0 + timedelta(minutes=i), None, "a", "is", f"x{i}", f"a is x{i}", [f"x{i}"],
                           i + 1, None, None) for i in range(5)])
    after = _calls(redis_client)
    assert after["cmdstat_evalsha"] - before.get("cmdstat_evalsha", 0) == 1
    assert [n.node_count for n in nodes] == [1, 2, 3, 4, 5] and len(mem) == 5
    first = mem.add_event(T0, None, "a", "is", "walking", "a is walking", ["walk"], 3, None, None, dedupe="a:t0:act")
    again = mem.add_event(T0, None, "a", "is", "walking", "a is walking", ["walk"], 3, None, None, dedupe="a:t0:act")
    assert again.node_id == first.node_id and again.node_count == first.node_count == 6 and len(mem) == 6
    assert mem.poignancy_total() == pytest.approx(1 + 2 + 3 + 4 + 5 + 3)


def test_a_node_stores_neither_its_id_nor_its_count_which_its_field_names(redis_url, redis_client):
    import json

    mem = AssociativeMemory(agent_id="a")
    node = event(mem, 0, "a is x", ["x"], 3)
    body = json.loads(redis_client.hget(mem._key("nodes"), node.node_id))
    assert node.node_id == "node_1" and "node_id" not in body and "node_count" not in body
    assert body["type_count"] == 1
    assert mem.get_node("node_1").node_count == 1 and mem.seq_event[0].node_id == "node_1"


def test_a_node_an_earlier_version_stored_with_its_id_and_count_is_still_read(redis_url, redis_client):
    import json

    mem = AssociativeMemory(agent_id="a")
    old = {"node_id": "node_1", "node_count": 1, "type_count": 1, "node_type": "event",
           "created": T0.isoformat(), "subject": "a", "predicate": "is", "object": "old",
           "description": "a is old", "poignancy": 2, "keywords": ["old"], "dedupe": "a:old"}
    redis_client.hset(mem._key("nodes"), "node_1", json.dumps(old))
    redis_client.hset(mem._key("dedupe"), "a:old", "node_1")
    redis_client.set(mem._key("seq"), 1)
    stored = mem.get_node("node_1")
    assert (stored.node_id, stored.node_count, stored.description) == ("node_1", 1, "a is old")
    again = mem.add_event(T0, None, "a", "is", "old", "a is old", ["old"], 2, None, None, dedupe="a:old")
    assert (again.node_id, again.node_count) == ("node_1", 1)
    assert event(mem, 1, "a is new", ["new"], 3).node_count == 2


def test_vectors_are_stored_packed_not_as_json(redis_url, redis_client):
    mem = AssociativeMemory(agent_id="a")
    mem.add_event(T0, None, "a", "is", "x", "a is x", ["x"], 3, ("a is x", [0.25] * 32), None)
    raw = redis_client.hget(mem._key("embeddings"), "a is x")
    assert len(raw) == 32 * 8 and mem.get_embedding("a is x") == [0.25] * 32


def test_retrieval_scores_a_bounded_candidate_set_of_a_large_memory(redis_url, monkeypatch):
    mem = AssociativeMemory(agent_id="a", candidates=20)
    mem.add_many([("event", T0 + timedelta(seconds=i), None, "a", "is", "busy", f"routine chore {i}",
                   ["chore"], 2, None, None) for i in range(1500)])
    target = event(mem, 2000, "the violin concert tonight", ["violin", "concert"], 9)
    built = []
    original = AssociativeMemory._node

    def counting(self, data, last_accessed, node_id):
        built.append(node_id)
        return original(self, data, last_accessed, node_id)

    monkeypatch.setattr(AssociativeMemory, "_node", counting)
    ranked = mem.retrieve_scored("violin concert", 3)
    assert ranked[0].node == target
    assert len(built) <= 20 * 2 + 2 * 20 * 2  # recent, important, and per query word events + thoughts
