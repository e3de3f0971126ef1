"""Submissions that are large or odd (issue 12.8, 12.19): accepted whole, or refused
with a clear error before anything is stored."""
from __future__ import annotations

import pytest
from support.sample_modules import Echo

from piano_dist import ConcurrentModuleManager
from piano_dist.core.client import TaskSpec
from piano_dist.errors import SecurityError

MAX_DEPENDENCIES = 10_000  # documented in README's input rules


@pytest.fixture
def manager(redis_url):
    m = ConcurrentModuleManager(max_workers=0, max_queue_size=0, redis_url=redis_url)
    m.register_module("echo", Echo())
    yield m
    m.shutdown()


def test_a_task_with_9000_dependencies_is_stored_whole(manager, redis_client):
    parents = manager.submit_many([{"module_name": "echo"} for _ in range(9000)])
    child = manager.submit_task("echo", dependencies=parents)
    assert manager.get_task_status(child)["status"] == "deferred"
    assert redis_client.scard(f"piano:task:{child}:pending") == 9000
    assert all(redis_client.sismember(f"piano:task:{p}:children", child) for p in parents[::997])
    # One parent failing settles it (the graph links are really there).
    manager.cancel_task(parents[1234])
    st = manager.get_task_status(child)
    assert st["status"] == "dependency_failed" and parents[1234] in st["error"]


def test_more_dependencies_than_the_limit_are_refused_before_anything_is_stored(manager, redis_client):
    parents = manager.submit_many([{"module_name": "echo"} for _ in range(MAX_DEPENDENCIES + 1)])
    keys_before = redis_client.dbsize()
    with pytest.raises(SecurityError, match=f"more than {MAX_DEPENDENCIES}"):
        manager.client.submit(TaskSpec("echo", dependencies=parents, task_id="too-many"))
    assert redis_client.dbsize() == keys_before and not redis_client.exists("rq:job:too-many")
