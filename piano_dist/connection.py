"""Resolve and build the Redis client every piano-dist component uses.

One place decides how piano-dist talks to Redis: which URL (explicit, environment,
else the embedded server), the client options (pool size, keepalive, timeouts), the
shared retry policy (:mod:`piano_dist.retry_policy`) and Sentinel. A client passed in
by the caller (``connection=``) is used as given, with its own retry settings.
"""
from __future__ import annotations

import socket
from typing import Any

import redis
from redis.connection import SSLConnection
from redis.sentinel import Sentinel, SentinelManagedConnection, SentinelManagedSSLConnection

from .config import configured_redis_url
from .embedded import EmbeddedRedis
from .redis_url import (is_sentinel_url, parse_sentinel_url, redact, sentinel_url, url_from_kwargs,
                        url_scheme)
from .retry_policy import RedisRetry

MAX_POOL_CONNECTIONS = 5000
CONNECT_TIMEOUT = 5.0
# A reply slower than this counts as a lost connection (and is retried): redis-py 8's own
# default, made explicit. Blocking commands (BLPOP, XREAD BLOCK) must wait less than this.
SOCKET_TIMEOUT = 5.0
# How long a sentinel may take to answer before discovery asks the next one.
SENTINEL_TIMEOUT = 1.0
_SUPPORTED = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel")


def _keepalive_options() -> dict:
    """Notice a peer that vanished without closing (a machine lost, a partition) in
    about 25 s instead of the kernel's default two hours."""
    options = {}
    for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            options[getattr(socket, name)] = value
    return options


def resolve_redis_url(redis_url: str | None = None) -> str:
    """An explicit URL, else the environment's, else the embedded server's (started if needed)."""
    return redis_url or configured_redis_url() or EmbeddedRedis().ensure_running()


def client_options(url: str, retry_deadline: float | None = None) -> dict[str, Any]:
    """The options piano-dist gives every client of ``url`` (the URL's own query options win)."""
    # redis-py 8 caps a pool at 100 connections by default. A worker's slots, its
    # modules' state listeners and lock waiters (each blocked on its own BLPOP) share one
    # pool, so a worker running many agents needs more; Redis itself allows 10,000.
    options: dict[str, Any] = {"max_connections": MAX_POOL_CONNECTIONS, "health_check_interval": 30,
                               "retry": RedisRetry(retry_deadline), "socket_connect_timeout": CONNECT_TIMEOUT,
                               "socket_timeout": SOCKET_TIMEOUT}
    if url_scheme(url) != "unix":
        options.update(socket_keepalive=True, socket_keepalive_options=_keepalive_options())
    return options


def client_for_url(url: str, retry_deadline: float | None = None, **overrides: Any) -> redis.Redis:
    """A client (raw bytes, shared retry policy) for any URL form piano-dist accepts.

    ``retry_deadline`` replaces the policy's deadline (0: no retries, for a quick check);
    ``overrides`` replace other client options (``socket_timeout=…``).
    """
    scheme = url_scheme(url)
    if scheme not in _SUPPORTED:
        raise ValueError(f"unsupported Redis URL {redact(url)!r}: use redis://, rediss://, unix:// "
                         "or redis+sentinel://")
    options = dict(client_options(url, retry_deadline), **overrides)
    if is_sentinel_url(url):
        client = _sentinel_master(url, options)
    else:
        client = redis.Redis.from_url(url, **options)
    # Child processes (workers a demo starts) get exactly this URL back: connection_url.
    client.connection_pool.piano_url = url
    return client


class _AskSentinelsOnReconnect:
    """Sentinel-managed connections that ask the sentinels again on every reconnect.

    redis-py looks the master up when a connection is checked out of the pool
    (``connect``), but a command that lost its connection reconnects from inside its
    retry loop (``send_packed_command`` → ``connect_check_health``) to the address the
    connection had: after a failover, the dead master, until the deadline passed and the
    command failed. Here that reconnect goes through ``connect`` too.
    """

    def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True):
        if not self._sock and retry_socket_connect:  # a reconnect: find the master first
            return self.connect()
        return super().connect_check_health(check_health, retry_socket_connect)


class PianoSentinelConnection(_AskSentinelsOnReconnect, SentinelManagedConnection):
    pass


class PianoSentinelSSLConnection(_AskSentinelsOnReconnect, SentinelManagedSSLConnection):
    pass


def _sentinel_master(url: str, options: dict[str, Any]) -> redis.Redis:
    target = parse_sentinel_url(url)
    sentinel_kwargs = {"socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT,
                       **target.sentinel_kwargs}
    if target.ssl:
        sentinel_kwargs["ssl"] = True
        for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs"):
            if name in target.options:
                sentinel_kwargs[name] = target.options[name]
    manager = Sentinel(target.sentinels, sentinel_kwargs=sentinel_kwargs)
    data_options = dict(options, **target.options, db=target.db,
                        connection_class=PianoSentinelSSLConnection if target.ssl else PianoSentinelConnection)
    if target.username:
        data_options["username"] = target.username
    if target.password is not None:
        data_options["password"] = target.password
    return manager.master_for(target.service_name, redis_class=redis.Redis, **data_options)


def get_connection(redis_url: str | None = None, connection: redis.Redis | None = None) -> redis.Redis:
    """The client to use: ``connection`` as given, or a new client for the resolved URL.

    Clients keep raw bytes (``decode_responses=False``) because RQ stores compressed
    binary fields in its job hashes.
    """
    if connection is not None:
        if redis_url is not None:
            raise ValueError("give either redis_url= or connection=, not both")
        return connection
    return client_for_url(resolve_redis_url(redis_url))


def adopt_retry_policy(connection: redis.Redis) -> None:
    """Give a client made elsewhere (RQ's, for ``rq worker -w``) piano-dist's retry
    policy. Its pool is reset, so call it before the client is shared between threads."""
    kwargs = connection.connection_pool.connection_kwargs
    if not isinstance(kwargs.get("retry"), RedisRetry):
        kwargs["retry"] = RedisRetry()
        connection.connection_pool.reset()  # connections are made again, each with a copy


def connection_url(connection: redis.Redis) -> str:
    """A URL that reaches the same server the same way (TLS, credentials, socket,
    Sentinel), for child processes such as workers to connect with."""
    pool = connection.connection_pool
    known = getattr(pool, "piano_url", None)
    if known:
        return known
    kwargs = pool.connection_kwargs
    manager = getattr(pool, "sentinel_manager", None)
    if manager is not None:
        sentinels = [(s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
                     for s in manager.sentinels]
        ssl = issubclass(pool.connection_class, SSLConnection)
        return sentinel_url(sentinels, pool.service_name, kwargs, manager.sentinel_kwargs, ssl)
    return url_from_kwargs(kwargs, ssl=issubclass(pool.connection_class, SSLConnection))


def describe(connection: redis.Redis) -> str:
    """Where a client connects, without its password: for messages and logs."""
    return redact(connection_url(connection))
