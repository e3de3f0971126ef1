"""Compare-and-set under the merge resolver, lock owners per execution context, and an
operator's lock release fencing the old holder (issue 12.14, 12.15, 12.16)."""
from __future__ import annotations

import asyncio
import threading

import pytest
import redis
from click.testing import CliRunner
from support.resource_procs import FENCED_STORE

from piano_dist.resources import (AccessMode, FencedWriteRejected, ResourceCoordinator, ResourceType, fence_args,
                                  raise_if_fenced)
from piano_dist.state import ChangeStatus, StateCoordinator, SyncPolicy


class Agent:
    def __init__(self, name):
        self.name = name
        self.traits = {"kind": True}
        self.goals = ["open the cafe"]


@pytest.mark.parametrize("strategy", ["merge", "priority", "latest_wins"])
def test_two_changes_expecting_one_version_apply_once_in_a_batch(redis_client, strategy):
    c = StateCoordinator(Agent(f"cas-{strategy}"), SyncPolicy.ON_DEMAND, connection=redis_client)
    try:
        c.register_module("m1", None)
        c.register_module("m2", None)
        c.register_conflict_resolver("traits", strategy)
        seen = c.get_version("traits")
        first = c.propose_change("m1", "traits", {"shy": False}, expected_version=seen)
        second = c.propose_change("m2", "traits", {"bold": True}, expected_version=seen)
        c.apply_changes()
        outcomes = [c.get_change_status(first).status, c.get_change_status(second).status]
        assert outcomes.count(ChangeStatus.APPLIED) == 1, outcomes
        loser = c.get_change_status(second if outcomes[0] is ChangeStatus.APPLIED else first)
        if strategy == "merge":
            assert loser.status is ChangeStatus.REJECTED and "version_conflict" in loser.reason
            assert c.get_value("traits") == {"kind": True, "shy": False}
        assert c.get_version("traits") > seen
    finally:
        c.shutdown()


@pytest.fixture
def coords(redis_url):
    made = []

    def make(**kw):
        kw.setdefault("lease", 2.0)
        coord = ResourceCoordinator(10, 5.0, connection=redis.Redis.from_url(redis_url), **kw)
        made.append(coord)
        return coord

    yield make
    for coord in made:
        coord.shutdown()


def test_asyncio_tasks_and_threads_wait_as_themselves_not_as_their_parent(coords):
    """A waiter in a new asyncio task (or asyncio.to_thread) inherited its parent's lock
    owner, so waiting for its parent's lock looked like waiting for itself: DeadlockError."""
    coord = coords(deadlock_timeout=0.2)
    coord.register_resource("world", None, ResourceType.AGENT_STATE)

    async def main():
        held = coord.acquire_resource("world", AccessMode.WRITE, "parent", timeout=1)

        async def child():
            return await asyncio.to_thread(coord.acquire_resource, "world", AccessMode.WRITE, "child", 5)

        waiter = asyncio.create_task(child())
        await asyncio.sleep(0.6)  # the child waits past the deadlock check
        coord.release_resource(held)
        got = await waiter
        coord.release_resource(got)
        return got

    assert asyncio.run(main())


def test_owner_differs_per_thread_and_asyncio_task_and_stays_within_one():
    from piano_dist.resources.owner import current_owner

    async def main():
        here = current_owner()
        assert current_owner() == here
        in_task = await asyncio.create_task(_owner())
        in_thread = await asyncio.to_thread(current_owner)
        return here, in_task, in_thread

    async def _owner():
        return current_owner()

    here, in_task, in_thread = asyncio.run(main())
    assert len({here, in_task, in_thread}) == 3
    seen = []
    t = threading.Thread(target=lambda: seen.append(current_owner()))
    t.start(), t.join()
    assert seen[0] not in (here, in_task, in_thread)


def test_an_operators_release_fences_the_old_holders_next_write(coords, redis_client):
    from piano_dist.cli.main import main as cli_main

    coord = coords()
    coord.register_resource("counter", None, ResourceType.AGENT_STATE)
    store = redis_client.register_script(FENCED_STORE)

    def fenced_store(value):
        try:
            store(keys=["c", "accepted"], args=[*fence_args("counter"), value])
        except redis.ResponseError as exc:
            raise_if_fenced(exc)
            raise

    lock_id = coord.acquire_resource("counter", AccessMode.WRITE, "stuck-holder", timeout=0)
    fenced_store(1)
    result = CliRunner().invoke(cli_main, ["locks", "release", lock_id])
    assert result.exit_code == 0 and f"released {lock_id}" in result.output, result.output
    with pytest.raises(FencedWriteRejected):
        fenced_store(2)  # nobody else took the lock: the release alone fences it
    assert redis_client.get("c") == b"1"
