"""``piano-dist worker``: a PianoWorker process (N concurrent slots)."""
from __future__ import annotations

import click

from piano_dist.keys import PRIORITY_LEVELS, Keys

from .connect import connection


@click.command()
@click.option("--concurrency", "-c", type=click.IntRange(1, 1024), default=16, show_default=True,
              help="Tasks run at once in this process.")
@click.option("--cpu-lanes", type=click.IntRange(1, 1024), envvar="PIANO_CPU_LANES", default=32,
              show_default=True,
              help="Tasks that may run Python at once; the other slots hold tasks waiting on the model.")
@click.option("--queues", "-q", multiple=True,
              help="Priority levels or queue names to serve, in order (default: all, critical first).")
@click.option("--burst", is_flag=True, help="Quit when the queues are empty.")
@click.option("--name", default=None, help="Worker name (default: host.pid.worker-xxxxxx).")
@click.option("--grace", type=float, default=30.0, show_default=True,
              help="Seconds running tasks get to finish after SIGTERM.")
@click.option("--isolation", type=click.Choice(["thread", "process"]), envvar="PIANO_ISOLATION",
              default="thread", show_default=True,
              help="Run each task in a thread, or in a child process killed at its timeout.")
@click.option("--allow", "allow", multiple=True, metavar="PREFIX",
              help="Import path whose module classes this worker may import (repeatable; added to "
                   "PIANO_ALLOWED_MODULES; piano_dist is always allowed; '*' allows every path).")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], case_sensitive=False),
              default="INFO", show_default=True,
              help="INFO: a line per finished task; DEBUG adds failed tasks' tracebacks.")
@click.option("--log-format", type=click.Choice(["text", "json"]), envvar="PIANO_LOG_FORMAT", default="text",
              show_default=True, help="json: one JSON object per log line.")
def worker(concurrency: int, cpu_lanes: int, queues: tuple, burst: bool, name: str | None, grace: float,
           isolation: str, allow: tuple, log_level: str, log_format: str) -> None:
    """Run a PianoWorker: N concurrent slots on the priority queues."""
    from piano_dist.workers.piano_worker import PianoWorker

    keys = Keys()
    names = []
    for q in queues:
        if q.lower() in PRIORITY_LEVELS:
            names.append(keys.queue_name(q.lower()))
        elif q in keys.queue_names:
            names.append(q)
        else:
            raise click.BadParameter(f"unknown queue {q!r}; use one of {', '.join(PRIORITY_LEVELS)}",
                                     param_hint="--queues")
    from piano_dist.core.allowlist import AllowList

    allowed = AllowList.from_env(allow)
    w = PianoWorker(names or None, connection=connection(), concurrency=concurrency, name=name,
                    grace_period=grace, isolation=isolation, allowed_modules=allowed, cpu_lanes=cpu_lanes)
    w.work(burst=burst, logging_level=log_level.upper(), log_json=log_format == "json")
