"""The systems under test for W1–W4: piano-dist and plain RQ 3, behind one small interface.

Staging: a drain is measured with every task already queued and the workers idle. Tasks
are submitted to a queue no worker serves (piano-dist: the BACKGROUND level, the workers
serve critical/high/normal; RQ: queue ``bench-staged``), then that queue's list is
RENAMEd onto a served queue in one command. The tasks' own path (claim, run, finish) is
untouched; only their ``origin`` names the staging queue.
"""
from __future__ import annotations

import json

import redis
from rq import Queue
from rq.job import Job

from piano_dist.core.client import TaskSpec
from piano_dist.keys import Keys

from . import tasks
from .common import RQ_QUEUE


class PianoTarget:
    name = "piano-dist"
    kind = "piano"

    def __init__(self, url: str):
        from piano_dist.manager import ConcurrentModuleManager

        self.conn = redis.Redis.from_url(url)
        self.keys = Keys()
        self.manager = ConcurrentModuleManager(max_workers=0, max_queue_size=0, redis_url=url)
        if "bench" not in self.manager.client.registry.names():
            self.manager.register_module("bench", tasks.BenchModule())
        else:
            self.manager.modules["bench"] = tasks.BenchModule()
        self.staged_key = self.keys.rq_queue(self.keys.queue_name("background"))
        self.served_key = self.keys.rq_queue(self.keys.queue_name("normal"))
        self.staged_origin = self.keys.queue_name("background")
        self.direct_origin = self.keys.queue_name("normal")

    def submit(self, method: str, n: int, args: tuple = (), staged: bool = True) -> list[str]:
        priority = "background" if staged else "normal"
        ids = []
        for start in range(0, n, 1000):
            ids += self.manager.submit_many([TaskSpec("bench", method, args, priority=priority)
                                             for _ in range(min(1000, n - start))])
        return ids

    def release(self) -> None:
        with self.conn.pipeline(transaction=False) as pipe:
            pipe.delete(self.keys.wakeup)  # wake-ups of the submit, consumed or not
            pipe.rename(self.staged_key, self.served_key)
            pipe.rpush(self.keys.wakeup, 1, 1)  # one per worker: a claim then takes all it can
            pipe.execute()

    def finished(self, staged: bool = True) -> int:
        return self.conn.zcard(f"rq:finished:{self.staged_origin if staged else self.direct_origin}")

    def submit_chain(self, n: int) -> list[str]:
        import uuid

        ids = [f"chain_{uuid.uuid4().hex[:12]}_{i}" for i in range(n)]
        specs = [TaskSpec("bench", "stamp", priority="normal", task_id=tid,
                          dependencies=[ids[i - 1]] if i else None) for i, tid in enumerate(ids)]
        self.manager.submit_many(specs)
        return ids

    def results(self, ids: list[str]) -> list:
        with self.conn.pipeline(transaction=False) as pipe:
            for tid in ids:
                pipe.hget(self.keys.rq_job(tid), "piano_result")
            return [json.loads(r) for r in pipe.execute()]

    def close(self) -> None:
        self.manager.shutdown()


class _StagedQueue(Queue):
    def push_job_id(self, job_id, pipeline=None, at_front=False):
        (pipeline if pipeline is not None else self.connection).rpush(self.key, job_id)


class RQTarget:
    def __init__(self, url: str, kind: str):
        self.kind = kind
        self.name = f"RQ {'SimpleWorker' if kind == 'simple' else 'Worker (fork)'}"
        self.conn = redis.Redis.from_url(url)
        self.queue = Queue(RQ_QUEUE, connection=self.conn)
        self.staged = Queue(f"{RQ_QUEUE}-staged", connection=self.conn)
        self.staged_origin = self.staged.name
        self.direct_origin = self.queue.name

    def submit(self, method: str, n: int, args: tuple = (), staged: bool = True) -> list[str]:
        func = {"noop": tasks.rq_noop, "sleep": tasks.rq_sleep, "stamp": tasks.rq_stamp}[method]
        queue = self.staged if staged else self.queue
        ids = []
        for start in range(0, n, 1000):
            with self.conn.pipeline() as pipe:
                jobs = queue.enqueue_many([Queue.prepare_data(func, args=args)
                                           for _ in range(min(1000, n - start))], pipeline=pipe)
                pipe.execute()
            ids += [j.id for j in jobs]
        return ids

    def release(self) -> None:
        self.conn.rename(self.staged.key, self.queue.key)

    def finished(self, staged: bool = True) -> int:
        return self.conn.zcard(f"rq:finished:{self.staged_origin if staged else self.direct_origin}")

    def submit_chain(self, n: int) -> list[str]:
        ids, prev = [], None
        for _ in range(n):
            job = self.queue.enqueue(tasks.rq_stamp, depends_on=prev)
            ids.append(job.id)
            prev = job
        return ids

    def results(self, ids: list[str]) -> list:
        return [Job.fetch(jid, connection=self.conn).return_value() for jid in ids]

    def close(self) -> None:
        pass
