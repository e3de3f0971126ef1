"""How the CLI prints: JSON, ISO-8601 UTC times, durations with units, aligned fields."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import click


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def iso(epoch: float | None) -> str | None:
    """Epoch seconds as ISO-8601 UTC with milliseconds (``2026-12-06T10:00:00.123Z``)."""
    if epoch is None:
        return None
    stamp = datetime.fromtimestamp(epoch, tz=timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def seconds(value: float | None) -> str:
    """A duration for people: ``850 ms``, ``3.2 s``, ``4 min 10 s``, ``2 h 5 min``."""
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.3g} s" if value < 10 else f"{value:.1f} s"
    minutes, secs = divmod(int(round(value)), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def fields(rows: list[tuple[str, Any]]) -> None:
    """``name  value`` lines, names aligned."""
    width = max((len(name) for name, _ in rows), default=0)
    for name, value in rows:
        click.echo(f"{name:<{width}}  {'-' if value is None or value == '' else value}")


def table(header: list[str], rows: list[list[Any]]) -> None:
    """Columns separated by two spaces, each as wide as its longest cell."""
    cells = [header] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
