"""Run inside a lab host: what became of a demo run's tasks, as JSON on stdout.

    python probe.py RUN_ID        (PIANO_REDIS_URL names the Redis)

The test process lives outside the lab's network, so it asks a host to look.
"""
from __future__ import annotations

import json
import sys

from piano_dist.bench.common import rq_time
from piano_dist.connection import get_connection


def main(run_id: str) -> None:
    client = get_connection()
    ids = [key.decode()[len("rq:job:"):] for key in client.scan_iter(match=f"rq:job:{run_id}*", count=1000)
           if b":" not in key[len("rq:job:"):]]
    with client.pipeline(transaction=False) as pipe:
        for tid in ids:
            pipe.hmget(f"rq:job:{tid}", "piano_status", "worker_name", "piano_attempts", "ended_at")
        rows = pipe.execute()
    by_status: dict[str, int] = {}
    by_worker: dict[str, int] = {}
    ends, repeated = [], 0
    for status, worker, attempts, ended in rows:
        status = (status or b"missing").decode()
        by_status[status] = by_status.get(status, 0) + 1
        name = (worker or b"").decode()
        by_worker[name] = by_worker.get(name, 0) + 1
        if int(attempts or 0) > 1:
            repeated += 1
        end = rq_time(ended)
        if end is not None:
            ends.append(end)
    print(json.dumps({"tasks": len(ids), "by_status": by_status, "by_worker": by_worker,
                      "attempted_more_than_once": repeated, "last_end": max(ends) if ends else None}))


if __name__ == "__main__":
    main(sys.argv[1])
