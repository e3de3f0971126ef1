"""Importing this module is observable: it records the import in Redis. The trust-boundary
tests register a class from here and check that a worker not allowed to import it never did."""
from __future__ import annotations

import os

import redis

from piano_dist import BaseModule

redis.Redis.from_url(os.environ["PIANO_REDIS_URL"]).rpush("test:canary-imported", os.getpid())


class Canary(BaseModule):
    def run(self):
        return "canary ran"
