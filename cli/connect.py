"""The CLI's Redis: the global options that name it, and a quick reachability check.

``--redis-url`` (aliases ``--url``, ``-u``) and ``--prefix`` are accepted before the
subcommand (on the root group) and after it (on every command): both go through the
environment (PIANO_REDIS_URL, PIANO_PREFIX), so every component and every process the
command starts agree. The last one given wins.

Every command connects through :func:`connection`, which pings the server once with
short timeouts and no retries, so that a wrong URL is one ``error: cannot reach Redis
at …`` line at once instead of a traceback or a wait on the library's retry policy.
"""
from __future__ import annotations

import os
import re

import click
import redis

from piano_dist.config import configured_redis_url
from piano_dist.keys import Keys

CHECK_TIMEOUT = 5.0
_connections: dict[str, redis.Redis] = {}


def shown_url(url: str) -> str:
    """The URL without its passwords (never printed)."""
    from piano_dist.redis_url import redact

    return redact(url)


def _set_redis_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value:
        os.environ["PIANO_REDIS_URL"] = value
    return value


def _set_prefix(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value:
        try:
            Keys(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
        os.environ["PIANO_PREFIX"] = value
    return value


URL_HELP = "Redis to use (default: PIANO_REDIS_URL, REDIS_URL, RQ_REDIS_URL, else the embedded server)."
PREFIX_HELP = "Key and queue-name prefix (default: PIANO_PREFIX, else 'piano')."


def root_options(f):
    """The options of the root group (also read from PIANO_REDIS_URL / PIANO_PREFIX)."""
    f = click.option("--prefix", envvar="PIANO_PREFIX", default=None, expose_value=False, is_eager=True,
                     callback=_set_prefix, help=PREFIX_HELP)(f)
    f = click.option("--redis-url", "--url", "-u", "redis_url", envvar="PIANO_REDIS_URL", default=None,
                     expose_value=False, is_eager=True, callback=_set_redis_url, metavar="URL",
                     help=URL_HELP)(f)
    return f


def add_late_options(command: click.Command) -> None:
    """Give ``command`` (and its subcommands) the global options, for use after its name."""
    names = {opt for p in command.params for opt in getattr(p, "opts", [])}
    if "--redis-url" not in names:
        command.params.append(click.Option(["--redis-url", "--url", "-u", "late_redis_url"], default=None,
                                           expose_value=False, is_eager=True, callback=_set_redis_url,
                                           metavar="URL", help=URL_HELP))
    if "--prefix" not in names:
        command.params.append(click.Option(["--prefix", "late_prefix"], default=None, expose_value=False,
                                           is_eager=True, callback=_set_prefix, help=PREFIX_HELP))
    for sub in getattr(command, "commands", {}).values():
        add_late_options(sub)


# Commands that run until stopped say at once that they started the embedded server;
# the others say it when they succeed, so that an error stays the only line printed.
ANNOUNCE_AT_ONCE = {"worker", "demo", "dashboard"}
deferred_notes: list[str] = []


def redis_url() -> str:
    """The URL the command uses: the configured one, else the embedded server's (started)."""
    from piano_dist.embedded import EmbeddedRedis

    url = configured_redis_url()
    if url:
        return url
    embedded = EmbeddedRedis()
    url = embedded.running_url()
    if url:
        return url
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.info_name in ANNOUNCE_AT_ONCE:
        return embedded.ensure_running()
    url = embedded.ensure_running(announce=False)
    deferred_notes.append(f"piano-dist: started embedded Redis at {shown_url(url)} (data in {embedded.home})")
    return url


def where() -> str:
    url = configured_redis_url()
    return shown_url(url) if url else "the embedded Redis"


def describe_redis_error(exc: redis.RedisError, url: str | None = None) -> str:
    at = shown_url(url) if url else where()
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, redis.AuthenticationError) or re.match(r"(NOAUTH|WRONGPASS|invalid password)", text, re.I):
        # It did reach Redis: the URL's user or password is wrong or missing.
        return f"Redis authentication failed at {at} ({text}): check the user and password in the URL"
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return f"cannot reach Redis at {at}: {text}"
    if isinstance(exc, redis.exceptions.InvalidResponse):
        return f"cannot reach Redis at {at}: the server there does not speak the Redis protocol ({text})"
    return f"Redis at {at} answered: {text}"


def check_reachable(url: str) -> None:
    """Ping ``url`` once with short timeouts and no retries; a one-line error if it fails."""
    from .errors import CliError

    from piano_dist.connection import client_for_url
    from piano_dist.retry_policy import transient_reply

    try:
        # Every URL form piano-dist accepts (TLS, unix sockets, Sentinel), without retries.
        probe = client_for_url(url, retry_deadline=0, socket_connect_timeout=CHECK_TIMEOUT,
                               socket_timeout=CHECK_TIMEOUT, max_connections=2)
    except ValueError as exc:
        raise CliError(f"invalid Redis URL {shown_url(url)}: {exc}") from None
    try:
        probe.ping()
    except redis.RedisError as exc:
        if transient_reply(exc):
            # It is Redis, busy for now (a long script, loading its AOF after a restart):
            # the command's own client waits that out under the retry policy.
            return
        if not isinstance(exc, redis.ResponseError) or re.match(r"(NOAUTH|WRONGPASS)", str(exc)):
            raise CliError(describe_redis_error(exc, url)) from None
        raise CliError(f"cannot reach Redis at {shown_url(url)}: the server there does not speak the "
                       f"Redis protocol ({' '.join(str(exc).split())})") from None
    except OSError as exc:  # e.g. a TLS handshake with a plain-text server
        raise CliError(f"cannot reach Redis at {shown_url(url)}: {exc}") from None
    finally:
        probe.connection_pool.disconnect()


def connection() -> redis.Redis:
    """The client every command uses, after one reachability check (once per process)."""
    from piano_dist.connection import get_connection

    url = redis_url()
    client = _connections.get(url)
    if client is None:
        check_reachable(url)
        client = _connections[url] = get_connection(url)
    return client
