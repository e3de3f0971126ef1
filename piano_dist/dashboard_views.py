"""What rq-dashboard shows of piano-dist beyond RQ's own views: queues in priority order
and each worker's slots. Installed by :mod:`piano_dist.dashboard` (``install()``).

- rq-dashboard sorts queues by name (background, critical, high, low, normal). Its views
  list queues through ``Queue.all`` and sort with ``Queue.__lt__``; a Queue subclass
  orders a prefix's five queues critical → background (other queues by name).
- A PianoWorker runs many tasks at once; RQ records no per-worker executions for them
  (rq-dashboard would show it idle). workers.json gains, per worker, ``slots``,
  ``busy_slots`` and ``running_tasks`` ({id, call}) from piano-dist's own records, and
  the Workers page (templates/rq_dashboard/workers.html, which piano_dist.dashboard
  renders instead of rq-dashboard's own) shows them.
"""
from __future__ import annotations

from pathlib import Path

import rq_dashboard.web as _web
from rq.queue import Queue

from .keys import PRIORITY_LEVELS, Keys

OWN_TEMPLATES = Path(__file__).with_name("templates")


def queue_order(name: str) -> tuple:
    """Sort key: a prefix's priority queues together, most urgent first."""
    base, _, level = name.rpartition(".")
    if base and level in PRIORITY_LEVELS:
        return (base, 1 + PRIORITY_LEVELS.index(level), "")
    return (name, 0, name)


class DashboardQueue(Queue):
    """The Queue class rq-dashboard's views use: priority order when sorted and listed."""

    def __lt__(self, other):
        if not isinstance(other, Queue):
            raise TypeError("Cannot compare queues to other objects")
        return queue_order(self.name) < queue_order(other.name)

    @classmethod
    def all(cls, *args, **kwargs) -> list:
        return sorted(super().all(*args, **kwargs))


def _prefix_of(queue_names: list[str]) -> str | None:
    for name in queue_names:
        base, _, level = name.rpartition(".")
        if base and level in PRIORITY_LEVELS:
            return base
    return None


def add_slots(connection, workers: list[dict]) -> None:
    """Give each worker record (workers.json's) its slots, busy slots and running tasks."""
    prefixes = {w["name"]: _prefix_of(w.get("queues") or []) for w in workers}
    running_ids: list[str] = []
    with connection.pipeline(transaction=False) as pipe:
        for w in workers:
            pipe.hget(Keys.rq_worker(w["name"]), "piano_slots")
        for prefix in sorted({p for p in prefixes.values() if p}):
            pipe.zrange(Keys(prefix).running, 0, -1)
        rows = pipe.execute()
    slots = rows[:len(workers)]
    for ids in rows[len(workers):]:
        running_ids += [i.decode() for i in ids]
    with connection.pipeline(transaction=False) as pipe:
        for tid in running_ids:
            pipe.hmget(Keys.rq_job(tid), "worker_name", "piano_module", "piano_method", "piano_status")
        details = pipe.execute()
    by_worker: dict[str, list[dict]] = {}
    for tid, (worker, module, method, status) in zip(running_ids, details):
        if worker and status == b"running":
            by_worker.setdefault(worker.decode(errors="replace"), []).append(
                {"id": tid, "call": f"{(module or b'?').decode(errors='replace')}."
                                    f"{(method or b'?').decode(errors='replace')}"})
    for w, raw in zip(workers, slots):
        try:
            w["slots"] = int(raw) if raw is not None else None
        except ValueError:
            w["slots"] = None
        tasks = sorted(by_worker.get(w["name"], []), key=lambda t: t["id"])
        w["running_tasks"] = tasks
        w["busy_slots"] = len(tasks)


def _list_workers_with_slots(instance_number):
    data = _web.list_workers.__wrapped__(instance_number)
    add_slots(_web.current_app.redis_conn, data["workers"])
    return data


def _on_register(state) -> None:
    endpoint = f"{_web.blueprint.name}.list_workers"
    if endpoint in state.app.view_functions:
        state.app.view_functions[endpoint] = _web.jsonify(_list_workers_with_slots)


_installed = False


def install() -> None:
    """Swap in the priority-ordered Queue class and hook the blueprint's registration
    (idempotent; must run before the app registers rq-dashboard's blueprint)."""
    global _installed
    if _web.Queue is Queue:
        _web.Queue = DashboardQueue
    if not _installed:
        _web.blueprint.record(_on_register)
        _installed = True
