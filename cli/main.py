"""``piano-dist``: run workers, submit and inspect tasks, manage the embedded Redis."""
from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from piano_dist.core.types import Priority
from piano_dist.errors import PianoError, UnknownTaskError
from piano_dist.keys import PRIORITY_LEVELS, Keys

from .errors import FriendlyGroup

PRIORITY_CHOICE = click.Choice([p.name.lower() for p in Priority], case_sensitive=False)


def _json_arg(text: str | None, what: str, kind: type) -> Any:
    if text is None:
        return kind()
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, kind):
        raise click.BadParameter(f"{what} must be a JSON {'array' if kind is list else 'object'}, "
                                 f"not {type(value).__name__}")
    return value


def _client():
    from piano_dist.connection import get_connection
    from piano_dist.core.client import TaskClient

    return TaskClient(get_connection(), Keys())


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


@click.group(cls=FriendlyGroup)
@click.option("--redis-url", envvar="PIANO_REDIS_URL", default=None,
              help="Redis to use (default: PIANO_REDIS_URL, REDIS_URL, else the embedded server).")
@click.option("--prefix", envvar="PIANO_PREFIX", default=None, help="Key prefix (default 'piano').")
@click.pass_context
def main(ctx: click.Context, redis_url: str | None, prefix: str | None) -> None:
    """piano-dist: generative-agent modules as concurrent tasks on RQ workers."""
    # Through the environment, so every component and every worker process we start agree.
    if redis_url:
        os.environ["PIANO_REDIS_URL"] = redis_url
    if prefix:
        Keys(prefix)  # validates
        os.environ["PIANO_PREFIX"] = prefix
    ctx.ensure_object(dict)
    ctx.obj.setdefault("connection", None)


@main.command()
@click.option("--concurrency", "-c", type=click.IntRange(1, 1024), default=16, show_default=True,
              help="Tasks run at once in this process.")
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
@click.option("--log-level", default="INFO", show_default=True)
def worker(concurrency: int, queues: tuple, burst: bool, name: str | None, grace: float, isolation: str,
           allow: tuple, log_level: str) -> None:
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
    w = PianoWorker(names or None, concurrency=concurrency, name=name, grace_period=grace, isolation=isolation,
                    allowed_modules=allowed)
    w.work(burst=burst, logging_level=log_level.upper())


@main.command()
@click.argument("module")
@click.argument("method", default="run")
@click.option("--args", "args_json", default=None, help="Positional arguments as a JSON array.")
@click.option("--kwargs", "kwargs_json", default=None, help="Keyword arguments as a JSON object.")
@click.option("--priority", type=PRIORITY_CHOICE, default="normal", show_default=True)
@click.option("--depends-on", multiple=True, help="Task id this task waits for (repeatable).")
@click.option("--allow-failure", multiple=True, help="Dependency whose failure this task tolerates.")
@click.option("--timeout", type=float, default=None, help="Task timeout in seconds.")
@click.option("--retries", type=click.IntRange(0, 100), default=0)
@click.option("--wait", "wait_", is_flag=True, help="Wait for the task to end and print its status.")
@click.option("--wait-timeout", type=float, default=None, help="Give up waiting after this many seconds.")
def submit(module, method, args_json, kwargs_json, priority, depends_on, allow_failure, timeout, retries,
           wait_, wait_timeout) -> None:
    """Submit MODULE.METHOD as a task and print its id."""
    from piano_dist.core.client import TaskSpec

    args = _json_arg(args_json, "--args", list)
    kwargs = _json_arg(kwargs_json, "--kwargs", dict)
    client = _client()
    task_id = client.submit(TaskSpec(module, method, tuple(args), kwargs, priority,
                                     list(depends_on) or None, None, timeout, list(allow_failure) or None,
                                     retries))
    if not wait_:
        click.echo(task_id)
        return
    status = client.wait([task_id], wait_timeout)[task_id]
    _echo_json(status)
    if status["status"] != "completed":
        sys.exit(1)


@main.command()
@click.argument("task_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(task_id: str | None, as_json: bool) -> None:
    """A task's status, or the system's when no TASK_ID is given."""
    client = _client()
    if task_id is None:
        from piano_dist.executor import ModuleExecutor
        from piano_dist.manager import ConcurrentModuleManager

        manager = ConcurrentModuleManager(max_workers=0, connection=client.connection)
        data = manager.get_system_status()
        manager.shutdown()
    else:
        data = client.get_status(task_id)
        if data is None:
            raise UnknownTaskError(f"unknown task id {task_id}")
    if as_json:
        _echo_json(data)
        return
    for key, value in data.items():
        click.echo(f"{key:>20}: {value}")


@main.command()
@click.argument("task_id")
def cancel(task_id: str) -> None:
    """Cancel a task (queued/deferred: at once; running: when it returns)."""
    client = _client()
    before = client.get_status(task_id)
    if before is None:
        raise UnknownTaskError(f"unknown task id {task_id}")
    if not client.cancel(task_id):
        raise PianoError(f"task {task_id} already ended {before['status']}")
    after = client.get_status(task_id)
    click.echo(f"{task_id}: {'cancellation requested (running)' if after['status'] == 'running' else after['status']}")


@main.command()
@click.argument("module")
def pause(module: str) -> None:
    """Pause a module cluster-wide: its tasks stay queued."""
    _client().pause_module(module)
    click.echo(f"paused {module}")


@main.command()
@click.argument("module")
def resume(module: str) -> None:
    """Resume a paused module: its held tasks run in priority order."""
    moved = _client().resume_module(module)
    click.echo(f"resumed {module} ({moved} held tasks back in their queues)")


@main.command()
@click.option("--json", "as_json", is_flag=True)
def modules(as_json: bool) -> None:
    """Registered modules, their classes, runnable methods and paused state."""
    client = _client()
    paused = client.registry.paused()
    rows = {name: {"class": r.class_path, "methods": r.methods, "config": r.config, "paused": name in paused}
            for name, r in sorted(client.registry.all().items())}
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo("no modules registered")
    for name, row in rows.items():
        flag = " (paused)" if row["paused"] else ""
        click.echo(f"{name}{flag}: {row['class']} [{', '.join(row['methods'])}]")


@main.command()
@click.option("--json", "as_json", is_flag=True)
def info(as_json: bool) -> None:
    """Queues, workers, slots and task counts."""
    from piano_dist.executor import ModuleExecutor

    client = _client()
    keys = client.keys
    with client.connection.pipeline(transaction=False) as pipe:
        for q in keys.queue_names:
            pipe.llen(keys.rq_queue(q))
        pipe.zcard(keys.running)
        pipe.hgetall(keys.stats)
        queued = pipe.execute()
    stats = {k.decode(): int(v) for k, v in queued[-1].items()}
    workers = ModuleExecutor(0, connection=client.connection).worker_metrics()
    data = {"redis": client.connection.connection_pool.connection_kwargs.get("host"),
            "queues": dict(zip(keys.queue_names, queued[:-2])), "running": queued[-2],
            "workers": workers, "slots": sum(w["slots"] for w in workers), "counts": stats}
    if as_json:
        _echo_json(data)
        return
    click.echo("queues:")
    for q, n in data["queues"].items():
        click.echo(f"  {q:<24} {n}")
    click.echo(f"running: {data['running']}")
    click.echo(f"workers: {len(workers)} ({data['slots']} slots)")
    for w in workers:
        click.echo(f"  {w['name']}: {w['running']}/{w['slots']} busy, {w['tasks_executed']} executed")
    click.echo("counts: " + ", ".join(f"{k}={v}" for k, v in sorted(stats.items())))


@main.group()
def redis() -> None:
    """The embedded Redis server in PIANO_HOME (default ./.piano)."""


@redis.command("start")
def redis_start() -> None:
    from piano_dist.embedded import EmbeddedRedis

    click.echo(EmbeddedRedis().ensure_running(announce=False))


@redis.command("stop")
def redis_stop() -> None:
    from piano_dist.embedded import EmbeddedRedis

    click.echo("stopped" if EmbeddedRedis().stop() else "not running")


@redis.command("url")
def redis_url() -> None:
    from piano_dist.embedded import EmbeddedRedis

    url = EmbeddedRedis().running_url()
    if url is None:
        raise PianoError("the embedded Redis is not running (start it: piano-dist redis start)")
    click.echo(url)


def _policy_store():
    from piano_dist.connection import get_connection
    from piano_dist.scheduling_policy import PolicyStore

    return PolicyStore(get_connection(), Keys())


@main.command()
@click.argument("name", required=False,
                type=click.Choice(["priority_first", "round_robin", "fair_share", "weighted_priority",
                                   "shortest_job_first"], case_sensitive=False))
@click.option("--aging", type=click.FloatRange(min=0.001), default=None,
              help="WEIGHTED_PRIORITY: seconds of waiting worth one priority level.")
def policy(name: str | None, aging: float | None) -> None:
    """Show, or set for every worker, the cluster's scheduling policy (docs/scheduling.md)."""
    store = _policy_store()
    if name is not None or aging is not None:
        store.set_policy(name or store.get().policy, aging)
    config = store.get()
    click.echo(f"policy: {config.policy.value} (aging {config.aging_interval:g}s per level)")
    for module, quota in sorted(config.quotas.items()):
        click.echo(f"  quota {module}: {quota}")


@main.command()
@click.argument("module")
@click.argument("n", type=int, required=False)
@click.option("--clear", is_flag=True, help="Remove the module's quota.")
def quota(module: str, n: int | None, clear: bool) -> None:
    """Cap MODULE's running tasks across the cluster at N (FAIR_SHARE shares by quota)."""
    store = _policy_store()
    if clear:
        click.echo(f"quota of {module} {'removed' if store.clear_quota(module) else 'was not set'}")
        return
    if n is None:
        raise click.UsageError("give N (an integer >= 1), or --clear")
    try:
        store.set_quota(module, n)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="N") from None
    click.echo(f"quota {module}: {n}")


def _attach_optional_commands() -> None:
    # Commands with modules of their own (kept out of this file to keep it small).
    from .bench_command import bench
    from .dashboard_command import dashboard
    from .demo_command import demo
    from .locks_command import locks

    for command in (bench, dashboard, demo, locks):
        main.add_command(command)


_attach_optional_commands()

if __name__ == "__main__":
    main()
