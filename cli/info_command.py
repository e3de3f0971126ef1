"""``piano-dist info``: queues, paused modules and their held tasks, parked tasks, workers
and slots, cluster-wide counters with their units."""
from __future__ import annotations

from typing import Any

import click


from .common import JSON_OPTION, client
from .connect import redis_url, shown_url
from .output import echo_json, seconds

# The stats hash's counters, by the name and unit `info` shows them with.
_COUNTERS = {
    "submitted": "submitted_tasks", "completed": "completed_tasks", "failed": "failed_tasks",
    "timed_out": "timed_out_tasks", "dependency_failed": "dependency_failed_tasks",
    "cancelled": "cancelled_tasks", "retried": "retried_runs", "requeued": "requeued_runs",
    "tasks_executed": "finished_runs",
    "backlog": "backlog_tasks",
}


def counters(stats: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in stats.items():
        if name == "execution_ms":
            out["execution_seconds"] = round(value / 1000, 3)
        else:
            out[_COUNTERS.get(name, name)] = value
    return out


def gather() -> dict[str, Any]:
    from piano_dist.core.listing import held_counts, parked_backlog, paused_backlog, queue_counts
    from piano_dist.executor import ModuleExecutor

    tasks = client()
    keys, conn = tasks.keys, tasks.connection
    counts = queue_counts(conn, keys, lambda pipe: pipe.zcard(keys.delayed), lambda pipe: pipe.hgetall(keys.stats))
    waiting_to_retry, raw_stats = counts.extra
    queues = dict(zip(keys.queue_names, counts.queued))
    paused = paused_backlog(conn, keys)
    for q, count in zip(keys.queue_names, held_counts(conn, keys, paused)):  # held tasks still wait at their priority
        queues[q] += count
    parked, parked_by_queue = parked_backlog(conn, keys)
    for q, count in parked_by_queue.items():  # parked tasks still wait at their priority
        queues[q] += count
    stats = {k.decode(): int(float(v)) for k, v in raw_stats.items()}
    workers = ModuleExecutor(0, connection=conn).worker_metrics()
    return {
        "redis": shown_url(redis_url()),
        "prefix": keys.prefix,
        "queues": queues,
        "deferred": sum(counts.deferred),
        "running": counts.running,
        "waiting_to_retry": waiting_to_retry,
        "paused_modules": paused,
        "parked_modules": parked,
        "workers": sorted(workers, key=lambda w: w["name"]),
        "slots": sum(w["slots"] for w in workers),
        "busy_slots": sum(w["running"] for w in workers),
        "counters": counters(stats),
    }


def _tasks(n: int) -> str:
    return f"{n} task" if n == 1 else f"{n} tasks"


@click.command()
@JSON_OPTION
def info(as_json: bool) -> None:
    """Queues (critical first), paused modules and their held tasks, workers and slots, counters."""
    data = gather()
    if as_json:
        echo_json(data)
        return
    click.echo(f"redis: {data['redis']} (prefix {data['prefix']})")
    click.echo("queues (tasks waiting, most urgent first):")
    width = max(len(q) for q in data["queues"])
    for q, count in data["queues"].items():
        click.echo(f"  {q:<{width}}  {_tasks(count)}")
    click.echo(f"deferred: {_tasks(data['deferred'])}; running: {_tasks(data['running'])}; "
               f"waiting to retry: {_tasks(data['waiting_to_retry'])}")
    if data["paused_modules"]:
        click.echo("paused modules:")
        for module, count in data["paused_modules"].items():
            click.echo(f"  {module}: {_tasks(count)} held")
    else:
        click.echo("paused modules: none")
    for module, count in data["parked_modules"].items():
        click.echo(f"parked: {module}: {_tasks(count)} no worker that looked could start "
                   f"(`piano-dist status ID` says why)")
    click.echo(f"workers: {len(data['workers'])} ({data['busy_slots']}/{data['slots']} slots busy)")
    for w in data["workers"]:
        click.echo(f"  {w['name']}: {w['running']}/{w['slots']} slots busy, {_tasks(w['tasks_executed'])} run, "
                   f"{w['tasks_failed']} failed, peak RSS {w['peak_memory_usage'] / 1e6:.0f} MB")
    c = data["counters"]
    parts = [f"{c.pop(name)} {name.rsplit('_', 1)[0].replace('_', ' ')}"
             for name in list(c) if name.endswith("_tasks") and name != "backlog_tasks"]
    runs = [f"{c.pop(name)} runs {name[:-len('_runs')]}" for name in list(c) if name.endswith("_runs")]
    line = ", ".join(parts + runs)
    if "execution_seconds" in c:
        line += f"; task run time {seconds(c.pop('execution_seconds'))} in all"
    c.pop("backlog_tasks", None)
    line += "".join(f", {k}={v}" for k, v in c.items())
    click.echo(f"tasks: {line or 'none yet'}")
