"""The seed's StateCoordinator dictionaries as views of Redis, and snapshots of what the
local object shows."""
import pytest

from piano_dist import StateCoordinator, StateSnapshot


class Agent:
    def __init__(self):
        self.agent_id = "isabella"
        self.test_value = "initial"
        self.nested = {"value": 42}


class Listener:
    def __init__(self):
        self.changes = []

    def on_state_change(self, changes):
        self.changes.extend(changes)


def test_path_subscribers_show_every_processs_subscriptions(redis_url):
    one, two = StateCoordinator(Agent()), StateCoordinator(Agent())
    try:
        one.register_module("planner", Listener())
        two.register_module("memory", Listener())
        one.subscribe_to_path("planner", "test_value")
        two.subscribe_to_path("memory", "test_value")
        two.subscribe_to_path("memory", "nested.value")
        assert one.path_subscribers == {"test_value": {"planner", "memory"}, "nested.value": {"memory"}}
        assert one.path_subscribers["nobody.listens"] == set()
        two.unsubscribe_from_path("memory", "test_value")
        assert one.path_subscribers["test_value"] == {"planner"}
        one.unregister_module("planner")
        assert dict(two.path_subscribers) == {"nested.value": {"memory"}}
    finally:
        one.shutdown()
        two.shutdown()


def test_state_snapshots_is_a_view_of_the_stored_snapshots(redis_url):
    coordinator = StateCoordinator(Agent())
    try:
        coordinator.create_snapshot("before")
        other = StateCoordinator(Agent())  # another process's coordinator sees it
        assert "before" in other.state_snapshots and "initial" in other.state_snapshots
        assert list(other.state_snapshots) == ["initial", "before"] and len(other.state_snapshots) == 2
        snapshot = other.state_snapshots["before"]
        assert isinstance(snapshot, StateSnapshot) and snapshot.state_data["test_value"] == "initial"
        with pytest.raises(KeyError):
            other.state_snapshots["never"]
        assert 42 not in other.state_snapshots
        other.shutdown()
    finally:
        coordinator.shutdown()


def test_a_snapshot_holds_the_local_objects_direct_edits_and_restore_undoes_them(redis_url):
    agent = Agent()
    coordinator = StateCoordinator(agent)
    observer = StateCoordinator(Agent())
    try:
        agent.test_value = "edited directly"  # no propose_change: the seed's way
        agent.nested["value"] = 7
        agent.added_later = [1, 2]
        agent.not_json = object()
        coordinator.create_snapshot("s1")
        assert observer.get_state()["test_value"] == "edited directly"  # published, shared now
        assert observer.get_state()["nested"] == {"value": 7} and observer.get_value("added_later") == [1, 2]
        assert "not_json" not in observer.get_state()
        assert observer.get_snapshot("s1").state_data["test_value"] == "edited directly"
        agent.test_value = "modified"
        assert coordinator.restore_snapshot("s1")
        assert agent.test_value == "edited directly" and agent.nested == {"value": 7}
        assert coordinator.publish_local_edits() == []  # nothing differs any more
    finally:
        coordinator.shutdown()
        observer.shutdown()
