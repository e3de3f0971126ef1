"""W4 submit: N tasks from one client in one call (piano-dist ``submit_many``; RQ
``enqueue_many`` in a pipeline), no worker running; tasks/s as the client sees it."""
from __future__ import annotations

import time

from .common import command_calls, command_delta

KEY = "w4"


def run(target, n: int) -> dict:
    if target.kind == "piano":
        # The bench's one manager still tracks the earlier workloads' tasks: reading
        # active_tasks settles that bookkeeping here, so W4 times its own submits only.
        target.manager.active_tasks
    before = command_calls(target.conn)
    t0 = time.perf_counter()
    if target.kind == "piano":
        from piano_dist.core.client import TaskSpec

        target.manager.submit_many([TaskSpec("bench", "noop", priority="background") for _ in range(n)])
    else:
        from rq import Queue

        from . import tasks

        with target.conn.pipeline() as pipe:
            target.staged.enqueue_many([Queue.prepare_data(tasks.rq_noop) for _ in range(n)], pipeline=pipe)
            pipe.execute()
    elapsed = time.perf_counter() - t0
    delta = command_delta(before, command_calls(target.conn))
    return {"tasks": n, "seconds": elapsed, "tasks_per_s": n / elapsed,
            "commands_per_task": sum(delta.values()) / n}
