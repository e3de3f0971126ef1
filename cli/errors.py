"""Turn every user mistake into one line ``error: …`` on stderr and exit status 2.

Scripts rely on it: an error is exactly one non-empty line in all (nothing on stdout),
starting with lowercase ``error:``, and the exit status is 2 — click's usage errors
(unknown command or option, bad value) included. An interrupt prints ``error:
interrupted`` and exits 130, as shells report SIGINT. Anything else is a bug and keeps
its traceback.
"""
from __future__ import annotations

import sys

import click
import redis

from piano_dist.errors import PianoError

USAGE_STATUS = 2
INTERRUPTED_STATUS = 130

USER_ERRORS = (PianoError, KeyError, ValueError, TypeError, TimeoutError, redis.RedisError)


class CliError(click.ClickException):
    """A user-facing failure with its one-line message (raised by commands)."""

    exit_code = USAGE_STATUS


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def message_of(exc: BaseException) -> str:
    from .connect import describe_redis_error

    if isinstance(exc, redis.RedisError):
        return describe_redis_error(exc)
    if isinstance(exc, click.ClickException):
        return exc.format_message()
    if isinstance(exc, KeyError) and exc.args and not isinstance(exc, PianoError):
        return str(exc.args[0])
    return str(exc) or type(exc).__name__


def fail(message: str, status: int = USAGE_STATUS) -> None:
    sys.stdout.flush()
    click.echo(f"error: {one_line(message)}", err=True)
    sys.exit(status)


class FriendlyGroup(click.Group):
    """The root group: runs click without its standalone error printing and reports
    failures in the one-line form."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            status = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else "")
            sys.exit(0)
        except (click.Abort, KeyboardInterrupt):
            fail("interrupted", INTERRUPTED_STATUS)
        except click.ClickException as exc:
            fail(message_of(exc), USAGE_STATUS)
        except USER_ERRORS as exc:
            fail(message_of(exc), USAGE_STATUS)
        from .connect import deferred_notes

        for note in deferred_notes:
            click.echo(note, err=True)
        sys.exit(status if isinstance(status, int) else 0)
