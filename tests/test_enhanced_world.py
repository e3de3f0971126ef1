"""GridWorld: reproducible layout, what an agent observes, fenced writes under the lock."""
import pytest

from piano_dist.errors import FencedWriteRejected
from piano_dist.resources import AccessMode, ResourceCoordinator
from piano_dist.world import Environment, GridWorld


def test_same_seed_same_world(redis_client):
    a = GridWorld.create("a", 12, 12, seed=7, n_objects=10, agents=["x", "y"], connection=redis_client)
    b = GridWorld.create("b", 12, 12, seed=7, n_objects=10, agents=["y", "x"], connection=redis_client)
    c = GridWorld.create("c", 12, 12, seed=8, n_objects=10, agents=["x", "y"], connection=redis_client)
    sa, sb, sc = a.snapshot(), b.snapshot(), c.snapshot()
    assert (sa["objects"], sa["agents"]) == (sb["objects"], sb["agents"])
    assert (sa["objects"], sa["agents"]) != (sc["objects"], sc["agents"])
    assert isinstance(a, Environment)


def test_observe_sees_tiles_events_and_agents_within_radius(redis_client):
    world = GridWorld.create("town", 10, 10, seed=1, n_objects=0, connection=redis_client)
    world.place_agent("alice", 5, 5)
    world.place_agent("bob", 6, 5, "reading")
    world.place_agent("far", 0, 0)
    world.add_event(6, 5, "bob", "chat with", "alice")
    view = world.observe("alice", 2)
    assert view["position"] == [5, 5]
    assert [a["agent_id"] for a in view["agents"]] == ["bob"]
    (tile,) = view["tiles"]
    assert (tile["x"], tile["y"], tile["agents"]) == (6, 5, ["bob"])
    assert [e["description"] for e in tile["events"]] == ["bob is reading", "bob chat with alice"]
    assert world.observe("nobody", 2)["position"] is None
    with pytest.raises(ValueError):
        world.move_agent("alice", 10, 0)


def test_writes_under_a_superseded_lock_are_refused(redis_client):
    world = GridWorld.create("town", 5, 5, seed=0, n_objects=1, agents=["alice"], connection=redis_client)
    coordinator = ResourceCoordinator(connection=redis_client, default_timeout=2)
    try:
        assert world.register_with(coordinator) == "world"
        world.register_with(coordinator)  # a second process attaches instead of failing
        with coordinator.acquire_context("world", AccessMode.WRITE, "mover"):
            world.set_activity("alice", "painting")
            # Someone was granted the world after us (our lease lapsed): our writes must fail.
            redis_client.incr(coordinator.keys.resource_fence("world"))
            with pytest.raises(FencedWriteRejected):
                world.set_activity("alice", "sleeping")
        assert world.snapshot()["agents"]["alice"]["activity"] == "painting"
    finally:
        coordinator.shutdown()
