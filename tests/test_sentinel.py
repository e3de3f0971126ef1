"""Redis Sentinel: every component reaches the master through redis+sentinel:// URLs,
and when the master is SIGKILLed mid-run, workers, the client, the event listener and a
lock's lease keeper find the new master and every task ends."""
import pytest
from support.failure_procs import Workers
from support.sentinel import SentinelCluster
from support.waiting import wait_until

from piano_dist import ConcurrentModuleManager, ResourceCoordinator, ResourceType, TaskSpec
from piano_dist.connection import client_for_url, connection_url

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(monkeypatch):
    with SentinelCluster() as c:
        monkeypatch.setenv("PIANO_REDIS_URL", c.url)
        yield c


def test_a_sentinel_url_reaches_the_master_and_is_handed_on_unchanged(cluster):
    client = client_for_url(cluster.url)
    assert client.set("through-sentinel", 1)
    assert cluster.master.client().get("through-sentinel") == b"1"
    assert connection_url(client) == cluster.url


def test_every_task_ends_after_the_master_is_killed_mid_run(cluster):
    from support.redis_fault_modules import RedisUser

    n = 300
    manager = ConcurrentModuleManager(max_workers=0, redis_url=cluster.url, max_queue_size=0)
    locks = ResourceCoordinator(redis_url=cluster.url, lease=15.0, default_timeout=5)
    old_master = cluster.master_address()
    try:
        manager.register_module("user", RedisUser())
        locks.register_resource("map", None, ResourceType.AGENT_STATE)
        lock_id = locks.acquire_resource("map", "write", "keeper")
        assert lock_id is not None
        with Workers(cluster.url) as workers:
            for _ in range(2):
                workers.start(concurrency=4, log_level="WARNING", env={"PIANO_LEASE_SECONDS": "5"})
            ids = manager.submit_many([TaskSpec("user", "count", args=(f"t{i:03d}", 2, 0.05), task_id=f"t{i:03d}")
                                       for i in range(n)])
            client = manager.client
            wait_until(lambda: sum(st["status"] == "completed" for st in client.get_statuses(ids).values()) >= 60,
                       timeout=120, message="60 tasks completed")
            cluster.master.kill()
            wait_until(lambda: (cluster.master_address() or old_master) != old_master, timeout=60,
                       message="the sentinels promoted the replica")
            statuses = manager.wait(ids, timeout=180)
            assert all(w.alive() for w in workers.started), "a worker died with the master"
            # The lock survived the failover (shorter than its lease) and its keeper renews it there.
            status = locks.get_resource_status("map")
            assert status["active_locks"] == 1 and status["writer"] == "keeper", status
            expiry = status["locks"][0]["expires_at"]
            wait_until(lambda: locks.get_resource_status("map")["locks"][0]["expires_at"] > expiry, timeout=30,
                       message="the lease renewed on the new master")
            assert locks.release_resource(lock_id)
    finally:
        locks.shutdown()
        manager.shutdown()
    assert {st["status"] for st in statuses.values()} == {"completed"}, {
        t: (st["status"], st.get("error"), st.get("attempts")) for t, st in statuses.items()
        if st["status"] != "completed"}
