"""W1 no-op: N tasks that each INCR a counter; drain rate with every task queued and the
workers idle (worker start-up excluded), Redis commands per task, Redis memory per task."""
from __future__ import annotations

import time

from .common import command_calls, command_delta, job_window, used_memory, wait_count

KEY = "w1"


def run(target, n: int) -> dict:
    conn = target.conn
    ids = target.submit("noop", n)
    base = target.finished()
    mem_before = used_memory(conn)
    before = command_calls(conn)
    target.release()
    polls = wait_count(lambda: target.finished() - base, n, timeout=max(120, n / 20), what="W1 drain")
    time.sleep(0.05)
    after = command_calls(conn)
    mem_after = used_memory(conn)
    first, last = job_window(conn, ids)
    delta = command_delta(before, after)
    delta["zcard"] = delta.get("zcard", 0) - polls  # our own progress polls
    total = sum(delta.values())
    top = sorted(delta.items(), key=lambda kv: -kv[1])[:12]
    return {
        "tasks": n,
        "drain_s": last - first,
        "tasks_per_s": n / (last - first),
        "commands_per_task": total / n,
        "commands_breakdown_per_task": {k: round(v / n, 2) for k, v in top},
        "redis_bytes_per_task": (mem_after - mem_before) / n,
    }
