"""Resolve the Redis connection every piano-dist component uses."""
from __future__ import annotations

import redis

from .config import configured_redis_url
from .embedded import EmbeddedRedis


MAX_POOL_CONNECTIONS = 5000


def resolve_redis_url(redis_url: str | None = None) -> str:
    """An explicit URL, else the environment's, else the embedded server's (started if needed)."""
    return redis_url or configured_redis_url() or EmbeddedRedis().ensure_running()


def get_connection(redis_url: str | None = None, connection: redis.Redis | None = None) -> redis.Redis:
    """The client to use: ``connection`` as given, or a new client for the resolved URL.

    Clients keep raw bytes (``decode_responses=False``) because RQ stores compressed
    binary fields in its job hashes.
    """
    if connection is not None:
        if redis_url is not None:
            raise ValueError("give either redis_url= or connection=, not both")
        return connection
    url = resolve_redis_url(redis_url)
    # redis-py 8 caps a pool at 100 connections by default. A worker's slots, its
    # modules' state listeners and lock waiters (each blocked on its own BLPOP) share one
    # pool, so a worker running many agents needs more; Redis itself allows 10,000.
    return redis.Redis.from_url(url, health_check_interval=30, socket_keepalive=True,
                                max_connections=MAX_POOL_CONNECTIONS)


def connection_url(connection: redis.Redis) -> str:
    """A URL that reaches the same server, for child processes (workers) to connect."""
    kw = connection.connection_pool.connection_kwargs
    if "path" in kw:
        return f"unix://{kw['path']}?db={kw.get('db', 0)}"
    auth = ""
    if kw.get("password"):
        user = kw.get("username") or ""
        auth = f"{user}:{kw['password']}@"
    return f"redis://{auth}{kw.get('host', '127.0.0.1')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"
