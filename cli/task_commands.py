"""Tasks from the command line: submit, status, tasks (list), cancel."""
from __future__ import annotations

import sys
import time
from typing import Any

import click

from piano_dist.core.types import Priority, TaskStatus
from piano_dist.errors import PianoError, UnknownTaskError

from .common import JSON_OPTION, PRIORITY, STATUS_CHOICE, client, json_arg
from .output import echo_json, fields, iso, seconds, table


def task_view(tasks, status: dict[str, Any]) -> dict[str, Any]:
    """A task's status for people and scripts: ISO-8601 UTC times, durations in
    seconds, its parents (``dependencies``) and, while deferred, those it still waits for."""
    from piano_dist.core.listing import dependencies

    view = dict(status)
    now = time.time()
    created, started, ended = status.get("created_at"), status.get("started_at"), status.get("ended_at")
    for name in ("created_at", "started_at", "ended_at"):
        view[name] = iso(status.get(name))
    # Waiting ends when the task starts (or ends without starting: cancelled, dependency_failed).
    wait_end = started or ended or (None if TaskStatus(status["status"]).is_terminal else now)
    view["wait_seconds"] = round(wait_end - created, 3) if created and wait_end else None
    run_end = ended or (now if status["status"] == "running" else None)
    view["run_seconds"] = round(run_end - started, 3) if started and run_end else None
    parents, pending = dependencies(tasks.connection, tasks.keys, status["task_id"])
    view["dependencies"] = parents
    if status["status"] == TaskStatus.DEFERRED.value:
        view["pending_dependencies"] = pending
    return view


def print_task(view: dict[str, Any]) -> None:
    rows: list[tuple[str, Any]] = [
        ("task_id", view["task_id"]),
        ("status", view["status"] + (" (cancel requested)" if view.get("cancel_requested") else "")),
        ("call", f"{view['module']}.{view['method']}"),
        ("priority", f"{view['priority']} ({int(Priority[view['priority'].upper()])})"),
        ("agent", view.get("agent")),
        ("created_at", view["created_at"]),
        ("started_at", view["started_at"]),
        ("ended_at", view["ended_at"]),
        ("waited", seconds(view["wait_seconds"]) if view["wait_seconds"] is not None else None),
        ("ran", seconds(view["run_seconds"]) if view["run_seconds"] is not None else None),
        ("worker", view.get("worker")),
        ("attempts", view.get("attempts")),
        ("timeout", seconds(view["timeout"]) if view.get("timeout") else None),
        ("dependencies", ", ".join(view["dependencies"]) or "none"),
    ]
    if "pending_dependencies" in view:
        rows.append(("waiting for", ", ".join(view["pending_dependencies"]) or "none (being released)"))
    for name in ("waiting_because", "last_loss"):
        if view.get(name):
            rows.append((name.replace("_", " "), view[name]))
    if "result" in view:
        import json

        rows.append(("result", json.dumps(view["result"])))
    if view.get("error"):
        rows.append(("error", view["error"].strip().splitlines()[0] if view["error"].strip() else ""))
    fields(rows)
    error_lines = (view.get("error") or "").strip().splitlines()[1:]
    for line in error_lines:
        click.echo(f"  {line}")


def _plain(name: str, value: Any) -> str:
    """A system-status value for people: no Python reprs, durations with units."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and name.endswith("_seconds"):
        return seconds(value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {_plain(k, v)}" for k, v in value.items()) or "none"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "none"
    return str(value)


def print_system(data: dict[str, Any]) -> None:
    workers = data.get("workers") or []
    fields([(k, f"{len(workers)} ({sum(w.get('slots', 0) for w in workers)} slots)" if k == "workers"
             else _plain(k, v)) for k, v in data.items()])
    for w in workers:
        click.echo(f"  {w['name']}: {w.get('running', 0)}/{w.get('slots', 0)} slots busy, "
                   f"{w.get('tasks_executed', 0)} tasks run, {w.get('tasks_failed', 0)} failed")


@click.command()
@click.argument("module")
@click.argument("method", default="run")
@click.option("--args", "args_json", default=None, help="Positional arguments as a JSON array.")
@click.option("--kwargs", "kwargs_json", default=None, help="Keyword arguments as a JSON object.")
@click.option("--priority", type=PRIORITY, default="normal", show_default=True, help="1-5 or a level name.")
@click.option("--depends-on", multiple=True, help="Task id this task waits for (repeatable).")
@click.option("--allow-failure", multiple=True, help="Dependency whose failure this task tolerates.")
@click.option("--timeout", type=float, default=None, help="Task timeout in seconds.")
@click.option("--retries", type=click.IntRange(0, 100), default=0)
@click.option("--wait", "wait_", is_flag=True,
              help="Print the id, then wait for the task to end and print its status (exit 1 unless completed).")
@click.option("--wait-timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Give up waiting after this many seconds.")
@JSON_OPTION
def submit(module, method, args_json, kwargs_json, priority, depends_on, allow_failure, timeout, retries,
           wait_, wait_timeout, as_json) -> None:
    """Submit MODULE.METHOD as a task and print its id."""
    from piano_dist.core.client import TaskSpec

    args = json_arg(args_json, "--args", list)
    kwargs = json_arg(kwargs_json, "--kwargs", dict)
    tasks = client()
    task_id = tasks.submit(TaskSpec(module, method, tuple(args), kwargs, priority, list(depends_on) or None,
                                    None, timeout, list(allow_failure) or None, retries))
    if not wait_:
        if as_json:
            echo_json({"task_id": task_id, "status": tasks.get_status(task_id)["status"]})
        else:
            click.echo(task_id)
        return
    # The id first, so an interrupted wait does not lose it.
    click.echo(task_id)
    sys.stdout.flush()
    final = tasks.wait([task_id], wait_timeout)[task_id]
    view = task_view(tasks, final)
    if as_json:
        echo_json(view)
    else:
        print_task(view)
    if final["status"] != TaskStatus.COMPLETED.value:
        sys.exit(1)


@click.command()
@click.argument("task_id", required=False)
@JSON_OPTION
def status(task_id: str | None, as_json: bool) -> None:
    """A task's status (times in ISO-8601 UTC), or the system's when no TASK_ID is given."""
    tasks = client()
    if task_id is None:
        from piano_dist.manager import ConcurrentModuleManager

        manager = ConcurrentModuleManager(max_workers=0, connection=tasks.connection)
        try:
            data = manager.get_system_status()
        finally:
            manager.shutdown()
        if as_json:
            echo_json(data)
        else:
            print_system(data)
        return
    found = tasks.get_status(task_id)
    if found is None:
        raise UnknownTaskError(f"unknown task id {task_id}")
    view = task_view(tasks, found)
    if as_json:
        echo_json(view)
    else:
        print_task(view)


@click.command()
@click.option("--status", "status_", type=STATUS_CHOICE, default=None, help="Only tasks with this status.")
@click.option("--module", default=None, help="Only this module's tasks.")
@click.option("--agent", default=None, help="Only this agent's tasks.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="The N newest (after filtering).")
@JSON_OPTION
def tasks(status_: str | None, module: str | None, agent: str | None, limit: int | None, as_json: bool) -> None:
    """List tasks, newest first (held tasks of a paused module show as queued)."""
    from piano_dist.core.listing import list_tasks

    task_client = client()
    rows = list_tasks(task_client.connection, task_client.keys, status=status_, module=module, agent=agent,
                      limit=limit)
    if as_json:
        echo_json([{**r, **{k: iso(r[k]) for k in ("created_at", "started_at", "ended_at")}} for r in rows])
        return
    if not rows:
        click.echo("no tasks")
        return
    table(["TASK_ID", "STATUS", "CALL", "PRIORITY", "AGENT", "CREATED", "ENDED"],
          [[r["task_id"], r["status"], f"{r['module']}.{r['method']}", r["priority"], r["agent"],
            iso(r["created_at"]), iso(r["ended_at"])] for r in rows])


@click.command()
@click.argument("task_id", required=False)
@click.option("--module", default=None, help="Cancel all of this module's queued and deferred tasks "
                                             "(its running ones are asked to stop).")
@JSON_OPTION
def cancel(task_id: str | None, module: str | None, as_json: bool) -> None:
    """Cancel a task, or with --module every task of a module
    (queued/deferred: at once; running: when it returns)."""
    if (task_id is None) == (module is None):
        raise click.UsageError("give a TASK_ID or --module MODULE (one of them)")
    tasks = client()
    if module is not None:
        cancelled, cancelling = tasks.cancel_module(module)
        if as_json:
            echo_json({"module": module, "cancelled": cancelled, "cancelling": cancelling})
        else:
            click.echo(f"cancelled {cancelled} queued and deferred tasks of {module}"
                       + (f"; {cancelling} running asked to stop" if cancelling else ""))
        return
    before = tasks.get_status(task_id)
    if before is None:
        raise UnknownTaskError(f"unknown task id {task_id}")
    if not tasks.cancel(task_id):
        raise PianoError(f"task {task_id} already ended {before['status']}")
    after = tasks.get_status(task_id)
    running = after["status"] == "running"
    if as_json:
        echo_json({"task_id": task_id, "status": after["status"], "cancel_requested": running})
    else:
        click.echo(f"{task_id}: {'cancellation requested (running)' if running else after['status']}")

