"""Two deployments with different PIANO_PREFIX on one Redis (issue 12.9).

RQ's job keys are not prefixed (rq:job:<id>, so that `rq info` and rq-dashboard see every
task), which makes task ids one namespace per Redis. Each deployment sees and acts on its
own tasks only: another deployment's id is unknown to it, and cannot be reused."""
from __future__ import annotations

import pytest
from rq import Queue
from support.sample_modules import Echo
from support.workers import WorkerProcess

from piano_dist import ConcurrentModuleManager, TaskSpec
from piano_dist.errors import SecurityError, UnknownTaskError


@pytest.fixture
def pair(redis_url):
    alpha = ConcurrentModuleManager(max_workers=0, max_queue_size=0, redis_url=redis_url, prefix="alpha")
    beta = ConcurrentModuleManager(max_workers=0, max_queue_size=0, redis_url=redis_url, prefix="alpha.beta")
    for m in (alpha, beta):
        m.register_module("echo", Echo())
    yield alpha, beta
    alpha.shutdown()
    beta.shutdown()


def _backlog(redis_client, prefix: str) -> int:
    return int(redis_client.hget(f"{prefix}:stats", "backlog") or 0)


def test_a_deployment_neither_sees_nor_touches_another_ones_tasks(pair, redis_client):
    alpha, beta = pair
    theirs = beta.submit_task("echo", "add", args=(1, 2))
    mine = alpha.submit_task("echo", "add", args=(3, 4))
    assert alpha.get_task_status(theirs) is None and beta.get_task_status(mine) is None
    assert alpha.client.get_statuses([theirs, mine])[theirs] is None
    assert alpha.cancel_task(theirs) is False
    assert beta.get_task_status(theirs)["status"] == "queued"
    with pytest.raises(UnknownTaskError):
        alpha.wait([theirs], timeout=1)
    keys_before = redis_client.dbsize()
    with pytest.raises(UnknownTaskError, match=theirs):
        alpha.submit_task("echo", dependencies=[theirs])
    with pytest.raises(UnknownTaskError, match=theirs):
        alpha.submit_many([TaskSpec("echo", dependencies=[theirs])])
    with pytest.raises(SecurityError, match="already exists"):
        alpha.client.submit(TaskSpec("echo", task_id=theirs))
    assert redis_client.dbsize() == keys_before
    assert (_backlog(redis_client, "alpha"), _backlog(redis_client, "alpha.beta")) == (1, 1)


def test_each_deployments_workers_run_its_tasks_and_rq_sees_both(pair, redis_url, redis_client):
    alpha, beta = pair
    ids = {"alpha": alpha.submit_task("echo", "add", args=(1, 1)), "beta": beta.submit_task("echo", "add", args=(2, 2))}
    worker = WorkerProcess(redis_url, concurrency=2, name="alpha-worker", env={"PIANO_PREFIX": "alpha"})
    try:
        assert alpha.get_result(ids["alpha"], timeout=20) == 2
    finally:
        worker.stop()
    assert beta.get_task_status(ids["beta"])["status"] == "queued"
    names = {q.name for q in Queue.all(connection=redis_client)}
    assert {"alpha.normal", "alpha.beta.normal"} <= names
    assert (_backlog(redis_client, "alpha"), _backlog(redis_client, "alpha.beta")) == (0, 1)
