"""Lost updates under chaos: read-modify-write increments under WRITE, holders killed."""
from __future__ import annotations

import multiprocessing as mp
import os
import random
import re
import signal

import pytest
import redis

from piano_dist.resources import ResourceCoordinator, ResourceType
from support import resource_procs as procs
from support.waiting import wait_until

ctx = mp.get_context("fork")
PROCESSES, INCREMENTS, LEASE = 8, 200, 0.5
COUNTER, ACCEPTED, REJECTED = "chaos:counter", "chaos:accepted", "chaos:rejected"


@pytest.mark.slow
def test_no_lost_updates_with_sigkilled_and_paused_holders(redis_url):
    conn = redis.Redis.from_url(redis_url)
    coord = ResourceCoordinator(10, 5.0, connection=conn, lease=LEASE)
    coord.register_resource("counter", None, ResourceType.AGENT_STATE)
    rng = random.Random(5)
    workers = [ctx.Process(target=procs.incrementer, daemon=True,
                           args=(redis_url, "counter", COUNTER, ACCEPTED, REJECTED, INCREMENTS, LEASE, i))
               for i in range(PROCESSES)]
    report = ctx.Queue()
    paused = ctx.Process(target=procs.paused_writer, daemon=True,
                         args=(redis_url, "counter", COUNTER, ACCEPTED, REJECTED, report, LEASE))
    try:
        for w in workers:
            w.start()

        def current_writer_pid():
            locks = coord.get_resource_status("counter")["locks"]
            return int(re.split(":", locks[0]["owner"])[-2]) if locks else None

        # SIGKILL whichever process holds the lock, three times, at random progress points
        killed = set()
        for _ in range(3):
            target = int(conn.get(ACCEPTED) or 0) + rng.randint(50, 300)
            wait_until(lambda: int(conn.get(ACCEPTED) or 0) >= target, 60, message="progress")
            pid = wait_until(lambda: (lambda p: p if p and p not in killed else None)(current_writer_pid()),
                             10, interval=0.001, message="a live holder")
            os.kill(pid, signal.SIGKILL)
            killed.add(pid)

        # A holder frozen past its lease (SIGSTOP) wakes up and tries to write.
        paused.start()
        token = int(wait_until(lambda: conn.get(f"{COUNTER}:paused-token"), 60, message="paused writer read"))
        wait_until(lambda: paused.pid and _stopped(paused.pid), 10, message="paused writer stopped")
        wait_until(lambda: int(conn.get(coord.keys.resource_fence("counter")) or 0) > token, 30,
                   message="someone else granted the lock after the paused holder's lease lapsed")
        os.kill(paused.pid, signal.SIGCONT)
        kind, message = report.get(timeout=30)
        assert kind == "rejected", message
        assert report.get(timeout=30) == ("release", False)

        for w in workers:
            w.join(120)
        survivors = [w for w in workers if w.pid not in killed]
        assert all(w.exitcode == 0 for w in survivors)
        assert len(killed) == 3 and all(w.exitcode == -signal.SIGKILL for w in workers if w.pid in killed)
        counter = int(conn.get(COUNTER))
        accepted = int(conn.get(ACCEPTED))
        assert counter == accepted, f"lost updates: counter {counter} != {accepted} accepted writes"
        assert accepted >= INCREMENTS * len(survivors)
        assert int(conn.get(REJECTED) or 0) >= 1
    finally:
        for p in workers + [paused]:
            if p.pid and p.is_alive():
                os.kill(p.pid, signal.SIGKILL)
                p.join(5)
        coord.shutdown()


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"
