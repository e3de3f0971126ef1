"""ParallelPerceptionModule: attention after processing, JSON results, a cache that
hits across processes, metrics, shutdown."""
import json
import subprocess
import sys
import textwrap

import pytest

from piano_dist.enhanced_modules import (SENSOR_WEIGHTS, ParallelPerceptionModule, PerceptionResult,
                                         SensorType)
from piano_dist.world import GridWorld


@pytest.fixture
def town(redis_client):
    """alice with two neighbours chatting, no furniture in sight: visual perception is empty."""
    world = GridWorld.create("town", 12, 12, seed=1, n_objects=0, connection=redis_client)
    world.place_agent("alice", 5, 5)
    world.place_agent("bob", 6, 5, "idle")
    world.place_agent("carol", 4, 6, "idle")
    world.add_event(6, 5, "bob", "chat with", "alice")
    return world


def score(result):
    return SENSOR_WEIGHTS[SensorType(result["sensor_type"])] * result["confidence"]


def test_attention_ranks_all_sensors_before_cutting(redis_client, town):
    module = ParallelPerceptionModule(None, attention_bandwidth=3, vision_radius=3, agent_id="alice",
                                      world="town", connection=redis_client)
    try:
        results = module.run()
        assert len(results) == 3
        assert [score(r) for r in results] == sorted((score(r) for r in results), reverse=True)
        # Every sensor with input was processed, and the empty VISUAL sensor — first in the
        # seed's order, so kept by the original's cut-then-rank — lost its place.
        assert set(module.get_perception_metrics().tasks_by_sensor_type) == {
            "visual", "social", "environmental", "temporal", "spatial", "auditory"}
        assert [r.sensor_type for r in results] == ["social", "environmental", "temporal"]
        social = results[0].processed_data
        assert [a["agent_id"] for a in social["agents"]] == ["bob", "carol"]
        assert social["interactions"] == ["bob chat with alice"]
    finally:
        module.shutdown()


def test_results_are_json_records(redis_client, town):
    module = ParallelPerceptionModule(None, agent_id="alice", world="town", connection=redis_client)
    results = module.run()
    assert all(isinstance(r, PerceptionResult) and isinstance(r, dict) for r in results)
    decoded = json.loads(json.dumps(results))
    assert decoded == [r.to_dict() for r in results]
    assert set(decoded[0]) == {"task_id", "sensor_type", "processed_data", "confidence", "processing_time",
                               "metadata", "timestamp"}
    assert json.loads(json.dumps(module.get_perception_metrics()))["total_tasks_processed"] == 6
    module.shutdown()


def test_metrics_and_cache_within_one_process(redis_client, town):
    module = ParallelPerceptionModule(None, agent_id="alice", world="town", connection=redis_client)
    module.run()
    module.run()
    metrics = module.get_perception_metrics()
    assert metrics.total_tasks_processed == 12 and metrics.runs == 2
    assert metrics.cache_hits == 6 and metrics.cache_misses == 6 and metrics.cache_hit_rate == 0.5
    assert metrics.error_rate == 0.0 and metrics.average_processing_time > 0
    assert metrics.tasks_by_sensor_type["social"] == 2
    assert 1 <= metrics.concurrent_processing_peak <= 3
    # A change in the world changes the inputs it touches, and only those miss.
    town.move_agent("carol", 11, 11)
    module.run()
    assert module.get_perception_metrics().cache_misses > 6
    status = module.get_processing_status()
    assert status["attention_bandwidth"] == 5 and status["caching_enabled"] and status["processing_history_length"] == 15
    module.shutdown()
    module.shutdown()  # idempotent, never raises
    with pytest.raises(RuntimeError):
        module.run()


def test_cache_hits_across_processes(redis_url, redis_client, town):
    first = ParallelPerceptionModule(None, agent_id="alice", world="town", connection=redis_client)
    first.run()
    assert first.get_perception_metrics().cache_hits == 0
    assert first.get_cache_stats() == {"hits": 0, "misses": 6, "writes": 6}
    script = textwrap.dedent(f"""
        import json
        from piano_dist.enhanced_modules import ParallelPerceptionModule
        module = ParallelPerceptionModule(None, agent_id="alice", world="town", redis_url={redis_url!r})
        results = module.run()
        print(json.dumps({{"metrics": module.get_perception_metrics(),
                           "cached": [r.metadata["cached"] for r in results]}}))
        module.shutdown()
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    second = json.loads(out.stdout)
    assert second["metrics"]["cache_hits"] == 6 and second["metrics"]["cache_misses"] == 0
    assert all(second["cached"])
    assert first.get_cache_stats() == {"hits": 6, "misses": 6, "writes": 6}
    first.shutdown()


def test_cache_can_be_disabled_and_percepts_stored(redis_client, town):
    from piano_dist.memory import AssociativeMemory

    module = ParallelPerceptionModule(None, agent_id="alice", world="town", enable_caching=False,
                                      store_percepts=True, connection=redis_client)
    module.run()
    module.run()  # the same events again: already among the latest, not stored twice
    assert module.get_perception_metrics().cache_hit_rate == 0.0
    assert module.get_cache_stats()["writes"] == 0
    memory = AssociativeMemory(agent_id="alice", connection=redis_client)
    descriptions = sorted(n.description for n in memory.seq_event)
    assert descriptions == ["bob chat with alice", "bob is idle", "carol is idle"]
    chat = next(n for n in memory.seq_event if n.predicate == "chat with")
    assert chat.poignancy > max(n.poignancy for n in memory.seq_event if n.predicate == "is")
    module.shutdown()


def test_sensors_tell_interactions_and_sounds_and_take_missing_fields():
    """Events come from Redis (untrusted): one without a predicate or object is sensed
    as neither an interaction nor a sound, instead of failing the perception."""
    from piano_dist.enhanced_modules.sensors import SensorType, extract_inputs

    def event(predicate, obj):
        return {"id": f"e-{predicate}-{obj}", "subject": "bob", "predicate": predicate, "object": obj,
                "description": "d"}

    tiles = [{"x": 1, "y": 1, "distance": 0, "objects": [], "agents": [],
              "events": [event("chat with", "alice"), event("is", "being played"), event("sings", ""),
                         event("is", "idle"), event(None, None), {"id": "bare"}]}]
    inputs = extract_inputs({"tiles": tiles, "agents": []}, attention_bandwidth=10)
    assert [e["id"] for e in inputs[SensorType.SOCIAL]["interactions"]] == ["e-chat with-alice"]
    assert [e["id"] for e in inputs[SensorType.AUDITORY]["sounds"]] == [
        "e-chat with-alice", "e-is-being played", "e-sings-"]
    assert inputs[SensorType.ENVIRONMENTAL]["events_total"] == 6
