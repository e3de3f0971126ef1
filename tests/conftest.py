import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from support.redis_server import RedisServer  # noqa: E402


@pytest.fixture(scope="session")
def redis_server():
    """One private redis-server for the session; tests get it flushed (it is ours alone)."""
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
def redis_url(redis_server, monkeypatch):
    client = redis_server.client()
    client.flushall()
    client.close()
    monkeypatch.setenv("PIANO_REDIS_URL", redis_server.url)
    monkeypatch.delenv("REDIS_URL", raising=False)
    return redis_server.url


@pytest.fixture
def redis_client(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()
