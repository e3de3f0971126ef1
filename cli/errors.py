"""Turn user mistakes into one clear line and a non-zero exit, never a traceback."""
from __future__ import annotations

import sys

import click
import redis

from piano_dist.errors import PianoError

USER_ERRORS = (PianoError, KeyError, ValueError, TypeError, redis.ConnectionError, redis.TimeoutError)


def message_of(exc: BaseException) -> str:
    if isinstance(exc, redis.ConnectionError):
        return f"cannot reach Redis: {exc}"
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc) or type(exc).__name__


class FriendlyGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            click.echo(f"error: {message_of(exc)}", err=True)
            sys.exit(2)
