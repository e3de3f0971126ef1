"""GridWorld's spatial locality: a step claims its tile atomically, a replayed tick
changes nothing, a cell keeps its newest events, an observation reads only the cells in
view, and an agent's action never waits on a world lock."""
import threading

import pytest

from piano_dist.demo.action import AgentActionModule
from piano_dist.resources import AccessMode, ResourceCoordinator
from piano_dist.world import GridWorld
from piano_dist.world.grid import TileOccupied


def test_two_agents_stepping_onto_one_tile_cannot_both_get_it(redis_client):
    for round_ in range(20):
        world = GridWorld.create(f"duel{round_}", 5, 1, n_objects=0, connection=redis_client)
        world.place_agent("a", 1, 0)
        world.place_agent("b", 3, 0)
        barrier = threading.Barrier(2, timeout=10)
        outcomes = {}

        def step(agent, dx):
            barrier.wait()
            outcomes[agent] = world.step(agent, dx, 0, "walking", tick=0)

        threads = [threading.Thread(target=step, args=("a", 1)), threading.Thread(target=step, args=("b", -1))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        assert sorted(o["outcome"] for o in outcomes.values()) == ["blocked", "moved"]
        positions = {(o["x"], o["y"]) for o in outcomes.values()}
        assert len(positions) == 2 and (2, 0) in positions
        snap = world.snapshot()["agents"]
        assert {(r["x"], r["y"]) for r in snap.values()} == positions


def test_placing_on_a_taken_tile_is_refused_and_changes_nothing(redis_client):
    world = GridWorld.create("town", 4, 4, n_objects=0, connection=redis_client)
    world.place_agent("a", 1, 1)
    before = world.snapshot()
    with pytest.raises(TileOccupied, match="taken by a"):
        world.place_agent("b", 1, 1)
    assert world.snapshot()["agents"] == before["agents"]


def test_a_replayed_tick_answers_as_the_first_run_and_moves_nothing(redis_client):
    world = GridWorld.create("town", 6, 6, n_objects=0, connection=redis_client)
    world.place_agent("a", 2, 2)
    first = world.step("a", 1, 0, "walking", tick=0)
    again = world.step("a", 1, 0, "walking", tick=0)
    assert first["outcome"] == "moved" and again["outcome"] == "replayed"
    assert (again["x"], again["y"], again["event_id"]) == (first["x"], first["y"], first["event_id"]) == (3, 2, first["event_id"])
    assert len(world.snapshot()["events"]) == 1
    assert world.step("a", 1, 0, "walking", tick=1)["x"] == 4


def test_each_cell_keeps_only_its_newest_events(redis_client):
    world = GridWorld.create("town", 8, 8, n_objects=0, cell=4, events_per_cell=3, connection=redis_client)
    world.place_agent("a", 0, 0)
    ids = [world.add_event(1, 1, "bell", "rings", f"time {i}") for i in range(5)]
    seen = [e["id"] for t in world.observe("a", 2)["tiles"] for e in t["events"] if e["id"].startswith("ev")]
    assert seen == ids[-3:]
    assert len(world.snapshot()["events"]) == 3


def test_an_observation_reads_only_the_cells_in_view(redis_client):
    world = GridWorld.create("big", 64, 64, n_objects=0, cell=8, connection=redis_client)
    far = [(x, y) for x in range(40, 64) for y in range(40, 64)][:300]
    for i, (x, y) in enumerate(far):
        world.place_agent(f"far{i}", x, y)
    world.place_agent("me", 2, 2)
    world.place_agent("friend", 3, 2, "reading")
    view = world._view("me", 2)
    assert set(view.agents) == {"me", "friend"}  # not the 300 agents of the far corner
    seen = world.observe("me", 2)
    assert [a["agent_id"] for a in seen["agents"]] == ["friend"]


def test_an_action_never_waits_on_a_world_lock(redis_client):
    world = GridWorld.create("town", 10, 10, n_objects=0, agents=["alice"], connection=redis_client)
    coordinator = ResourceCoordinator(connection=redis_client, default_timeout=2)
    try:
        world.register_with(coordinator)
        with coordinator.acquire_context(world.resource_id, AccessMode.EXCLUSIVE, "someone else"):
            action = AgentActionModule(None, agent_id="alice", world="town", connection=redis_client)
            result = action.run(tick=0)
        assert result["outcome"] in ("moved", "blocked")
    finally:
        coordinator.shutdown()


def test_an_action_run_twice_moves_once_and_remembers_once(redis_client):
    from piano_dist.memory import AssociativeMemory

    GridWorld.create("town", 10, 10, n_objects=0, agents=["alice"], connection=redis_client)
    action = AgentActionModule(None, agent_id="alice", world="town", run_id="r1", connection=redis_client)
    first, again = action.run(tick=0), action.run(tick=0)
    assert again["outcome"] == "replayed" and (again["x"], again["y"]) == (first["x"], first["y"])
    assert len(AssociativeMemory(agent_id="alice", connection=redis_client)) == 1
