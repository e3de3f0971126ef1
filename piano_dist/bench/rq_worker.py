"""A plain RQ 3 worker for the benchmark: ``python -m piano_dist.bench.rq_worker URL simple|fork QUEUE``.

Logging at WARNING, so RQ is measured without its per-job log lines (its best case).
"""
from __future__ import annotations

import sys

import redis
from rq import Queue, SimpleWorker, Worker


def main() -> None:
    url, kind, queue = sys.argv[1:4]
    conn = redis.Redis.from_url(url)
    cls = SimpleWorker if kind == "simple" else Worker
    worker = cls([Queue(queue, connection=conn)], connection=conn)
    worker.work(burst=False, logging_level="WARNING")


if __name__ == "__main__":
    main()
