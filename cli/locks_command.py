"""`piano-dist locks`: who holds and who waits for which resource; release by lock id."""
from __future__ import annotations

import json

import click

from piano_dist.keys import Keys
from piano_dist.resources.status import all_resource_status, release_lock

from .errors import CliError


def _connection(ctx: click.Context):
    given = (ctx.obj or {}).get("connection")  # tests hand one in
    if given is not None:
        return given
    from .connect import connection

    return connection()


def _age(epoch_seconds: float, now: float) -> str:
    return f"{max(0.0, now - epoch_seconds):.1f}s"


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_context
def locks(ctx: click.Context, as_json: bool) -> None:
    """List resource locks: holders (mode, fence, lease left) and queued waiters."""
    ctx.ensure_object(dict)
    ctx.obj["lock_keys"] = Keys()
    if ctx.invoked_subcommand is not None:
        return
    connection = _connection(ctx)
    resources = all_resource_status(connection, ctx.obj["lock_keys"])
    if as_json:
        click.echo(json.dumps(resources, indent=2))
        return
    if not resources:
        click.echo("no resources registered")
        return
    sec, usec = connection.time()
    now = int(sec) + int(usec) / 1e6
    for res in resources:
        click.echo(f"{res['resource_id']} ({res['resource_type']})  fence={res['fence']}  "
                   f"holders={res['active_locks']}  waiting={res['waiting_requests']}")
        for lk in res["locks"]:
            click.echo(f"  HOLD {lk['mode']:<9} {lk['lock_id']}  holder={lk['holder']}  "
                       f"fence={lk['fence']}  held={_age(lk['acquired_at'], now)}  "
                       f"lease_left={max(0.0, lk['expires_at'] - now):.1f}s  owner={lk['owner']}")
        for w in res["waiters"]:
            click.echo(f"  WAIT {w['mode']:<9} {w['lock_id']}  holder={w['holder']}  "
                       f"waiting={_age(w['waiting_since'], now)}  owner={w['owner']}")


@locks.command("release")
@click.argument("lock_id")
@click.pass_context
def release(ctx: click.Context, lock_id: str) -> None:
    """Release LOCK_ID for an operator (its holder's next fenced write is refused)."""
    ctx.ensure_object(dict)
    if release_lock(_connection(ctx), ctx.obj.get("lock_keys") or Keys(), lock_id):
        click.echo(f"released {lock_id}")
    else:
        raise CliError(f"lock {lock_id} is not held (unknown, released, or its lease lapsed)")
