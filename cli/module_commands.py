"""Modules from the command line: list, pause, resume, unregister."""
from __future__ import annotations

import click

from .common import JSON_OPTION, client
from .output import echo_json


@click.command()
@JSON_OPTION
def modules(as_json: bool) -> None:
    """Registered modules, their classes, runnable methods and paused state."""
    tasks = client()
    paused = tasks.registry.paused()
    rows = {name: {"class": r.class_path, "methods": r.methods, "config": r.config, "paused": name in paused}
            for name, r in sorted(tasks.registry.all().items())}
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no modules registered")
    for name, row in rows.items():
        flag = " (paused)" if row["paused"] else ""
        click.echo(f"{name}{flag}: {row['class']} [{', '.join(row['methods'])}]")


@click.command()
@click.argument("module")
@JSON_OPTION
def pause(module: str, as_json: bool) -> None:
    """Pause a module cluster-wide: its tasks stay queued."""
    client().pause_module(module)
    if as_json:
        echo_json({"module": module, "paused": True})
    else:
        click.echo(f"paused {module}")


@click.command()
@click.argument("module")
@JSON_OPTION
def resume(module: str, as_json: bool) -> None:
    """Resume a paused module: its held tasks run in priority order."""
    moved = client().resume_module(module)
    if as_json:
        echo_json({"module": module, "paused": False, "requeued": moved})
    else:
        click.echo(f"resumed {module} ({moved} held tasks back in their queues)")


@click.command()
@click.argument("module")
@JSON_OPTION
def unregister(module: str, as_json: bool) -> None:
    """Remove MODULE cluster-wide and cancel its queued and deferred tasks
    (running ones finish)."""
    cancelled = client().unregister_module(module)
    if as_json:
        echo_json({"module": module, "unregistered": True, "cancelled": cancelled})
    else:
        click.echo(f"unregistered {module} (cancelled {cancelled} queued and deferred tasks)")
