"""A module for the scheduling tests: each run records, in Redis, when it started and
ended and how many runs of its module were live at that moment (its own count, kept
apart from the scheduler's)."""
from __future__ import annotations

import json
import os
import time

import redis

from piano_dist import BaseModule, current_task

RECORD_KEY = "sched-test:starts"
ENDS_KEY = "sched-test:ends"


def live_key(module: str) -> str:
    return f"sched-test:live:{module}"


class Timed(BaseModule):
    def run(self, label: str = "", seconds: float = 0.02):
        r = redis.Redis.from_url(os.environ["PIANO_REDIS_URL"])
        module = current_task().module_name
        live = r.incr(live_key(module))
        r.rpush(RECORD_KEY, json.dumps({"label": label, "module": module, "start": time.time(),
                                        "live": live, "pid": os.getpid()}))
        try:
            time.sleep(seconds)
        finally:
            r.decr(live_key(module))
            r.rpush(ENDS_KEY, label)
        return label


def starts(r: redis.Redis) -> list[dict]:
    """Recorded starts, in start order."""
    rows = [json.loads(x) for x in r.lrange(RECORD_KEY, 0, -1)]
    return sorted(rows, key=lambda row: row["start"])


def ends(r: redis.Redis) -> list[str]:
    return [x.decode() for x in r.lrange(ENDS_KEY, 0, -1)]
