"""``piano-dist redis``: the embedded Redis server, and the URL every command uses."""
from __future__ import annotations

import click

from piano_dist.config import configured_redis_url
from piano_dist.errors import PianoError


@click.group()
def redis() -> None:
    """The embedded Redis server in PIANO_HOME (default ./.piano)."""


@redis.command("start")
def redis_start() -> None:
    """Start the embedded server (if it is not running) and print its URL."""
    from piano_dist.embedded import EmbeddedRedis

    click.echo(EmbeddedRedis().ensure_running(announce=False))


@redis.command("stop")
def redis_stop() -> None:
    """Stop the embedded server."""
    from piano_dist.embedded import EmbeddedRedis

    click.echo("stopped" if EmbeddedRedis().stop() else "not running")


@redis.command("url")
def redis_url() -> None:
    """Print the URL piano-dist uses: the configured one (--redis-url, PIANO_REDIS_URL,
    REDIS_URL, RQ_REDIS_URL), else the running embedded server's. For other tools:
    rq info --url "$(piano-dist redis url)"."""
    from piano_dist.embedded import EmbeddedRedis

    url = configured_redis_url() or EmbeddedRedis().running_url()
    if url is None:
        raise PianoError("the embedded Redis is not running (start it: piano-dist redis start)")
    click.echo(url)
