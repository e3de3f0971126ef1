"""A lock request whose waiter fails while queued leaves the queue at once."""
import pytest
import redis

from piano_dist.resources import AccessMode, ResourceCoordinator, ResourceType


def test_a_failed_waiter_leaves_the_queue(redis_url):
    holder = ResourceCoordinator(redis_url=redis_url)
    waiter = ResourceCoordinator(redis_url=redis_url)
    try:
        holder.register_resource("world", None, ResourceType.COMPUTATION)
        held = holder.acquire_resource("world", AccessMode.WRITE, "holder")
        assert held

        def broken_blpop(*args, **kwargs):
            raise redis.ConnectionError("connection dropped while waiting")

        waiter.connection.blpop = broken_blpop
        with pytest.raises(redis.ConnectionError):
            waiter.acquire_resource("world", AccessMode.WRITE, "waiter", timeout=5)
        status = holder.get_resource_status("world")
        assert status["waiting_requests"] == 0, status
        assert holder.release_resource(held)
        # Nothing stale stands in the way of the next request.
        again = holder.acquire_resource("world", AccessMode.WRITE, "next", timeout=0)
        assert again is not None
        holder.release_resource(again)
    finally:
        holder.shutdown()
        waiter.shutdown()
