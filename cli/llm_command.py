"""`piano-dist llm`: model calls across the cluster — calls, tokens, cost, cache hits,
latency, limiter waits and 429s per module, agent and endpoint; `llm reset` clears them."""
from __future__ import annotations

import json

import click

from piano_dist.keys import Keys


def _connection(ctx: click.Context):
    given = (ctx.obj or {}).get("connection")  # tests hand one in
    if given is not None:
        return given
    from .connect import connection

    return connection()


def _money(value) -> str:
    return "—" if value is None else f"{value:,.6f}"


def _seconds(value) -> str:
    return "—" if value is None else f"{value * 1000:.0f} ms"


HEADER = ("calls", "tokens in", "tokens out", "cost", "cache hits", "p50", "p95", "limiter waits", "429s",
          "errors")


def _row(name: str, g: dict) -> tuple:
    return (name, f"{g['calls']:,}", f"{g['prompt_tokens']:,}", f"{g['completion_tokens']:,}", _money(g["cost"]),
            f"{g['cache_hits']:,}", _seconds(g["latency_p50_seconds"]), _seconds(g["latency_p95_seconds"]),
            f"{g['limiter_waits']:,} ({g['limiter_wait_seconds']:.1f} s)", f"{g['rate_limited']:,}",
            f"{g['errors']:,}")


def _table(title: str, groups: dict, limit: int) -> list[str]:
    names = sorted(groups, key=lambda n: (-(groups[n]["prompt_tokens"] + groups[n]["completion_tokens"]),
                                          -groups[n]["calls"], n))
    rows = [(title,) + HEADER] + [_row(n, groups[n]) for n in names[:limit]]
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    if len(names) > limit:
        lines.append(f"… {len(names) - limit} more (--limit, or --json for all)")
    return lines


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True,
              help="Rows per table (largest token users first).")
@click.pass_context
def llm(ctx: click.Context, as_json: bool, limit: int) -> None:
    """Model calls across the cluster: per module, agent and endpoint."""
    if ctx.invoked_subcommand is not None:
        return
    from piano_dist.llm.report import cluster_report

    report = cluster_report(_connection(ctx), Keys())
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    total = report["total"]
    if not total["calls"]:
        click.echo("no model calls recorded")
    else:
        rate = total["cache_hit_rate"]
        click.echo(f"{total['calls']:,} calls, {total['requests']:,} requests, "
                   f"{total['prompt_tokens']:,} + {total['completion_tokens']:,} tokens, cost {_money(total['cost'])}, "
                   f"cache hit rate {'—' if rate is None else f'{rate:.1%}'}, "
                   f"limiter waits {total['limiter_waits']:,} ({total['limiter_wait_seconds']:.1f} s), "
                   f"429s {total['rate_limited']:,}, errors {total['errors']:,}")
    for title, scope in (("endpoint", "endpoints"), ("module", "modules"), ("agent", "agents")):
        if report[scope]:
            click.echo("")
            for line in _table(title, report[scope], limit):
                click.echo(line)
    for name, status in sorted(report["endpoint_status"].items()):
        if status.get("paused_for_seconds"):
            click.echo(f"\n{name}: paused for another {status['paused_for_seconds']:.1f} s (the endpoint pushed back)")


@llm.command("reset")
@click.pass_context
def llm_reset(ctx: click.Context) -> None:
    """Forget the recorded counters (the cache and the limiters are kept)."""
    from piano_dist.llm.accounting import Accounting

    removed = Accounting(_connection(ctx), Keys()).reset()
    click.echo(f"model-call accounting cleared ({removed} keys)")
