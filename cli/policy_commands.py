"""The cluster's scheduling policy and module quotas (docs/scheduling.md)."""
from __future__ import annotations

import click

from piano_dist.keys import Keys
from piano_dist.scheduling_policy import SchedulingPolicy

from .common import JSON_OPTION, client
from .connect import connection
from .output import echo_json


def _store():
    from piano_dist.scheduling_policy import PolicyStore

    return PolicyStore(connection(), Keys())


@click.command()
@click.argument("name", required=False, type=click.Choice([p.value for p in SchedulingPolicy], case_sensitive=False))
@click.option("--aging", type=click.FloatRange(min=0.001), default=None,
              help="WEIGHTED_PRIORITY: seconds of waiting worth one priority level.")
@JSON_OPTION
def policy(name: str | None, aging: float | None, as_json: bool) -> None:
    """Show, or set for every worker, the cluster's scheduling policy."""
    store = _store()
    if name is not None or aging is not None:
        store.set_policy(name or store.get().policy, aging)
    config = store.get()
    if as_json:
        echo_json({"policy": config.policy.value, "aging_seconds": config.aging_interval,
                   "fairness": config.enable_fairness, "quotas": config.quotas})
        return
    click.echo(f"policy: {config.policy.value} (aging {config.aging_interval:g}s per level)")
    for module, quota in sorted(config.quotas.items()):
        click.echo(f"  quota {module}: {quota}")


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("module")
@click.argument("n", required=False)
@click.option("--clear", is_flag=True, help="Remove the module's quota.")
@JSON_OPTION
def quota(module: str, n: str | None, clear: bool, as_json: bool) -> None:
    """Show MODULE's quota, or cap its running tasks across the cluster at N
    (FAIR_SHARE shares slots by quota)."""
    store = _store()
    registered = client().registry.get(module) is not None
    if clear:
        if n is not None:
            raise click.UsageError("give N or --clear, not both")
        removed = store.clear_quota(module)
        if not removed and not registered:
            client().registry.require(module)  # the one-line "not registered" error
        if as_json:
            echo_json({"module": module, "quota": None})
        else:
            click.echo(f"quota of {module} {'removed' if removed else 'was not set'}")
        return
    if not registered:
        client().registry.require(module)
    if n is not None:
        try:
            value = int(n)
        except ValueError:
            raise click.BadParameter(f"{n!r} is not an integer", param_hint="N") from None
        if value < 1:
            raise click.BadParameter(f"{value} is below 1: a quota caps the module's running tasks "
                                     f"(remove it with --clear)", param_hint="N")
        store.set_quota(module, value)
    current = store.get().quotas.get(module)
    if as_json:
        echo_json({"module": module, "quota": current})
    else:
        click.echo(f"quota {module}: {current if current is not None else 'none'}")
