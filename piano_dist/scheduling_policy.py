"""The cluster's scheduling policy and module quotas, kept in Redis.

Every worker's claim script reads ``<prefix>:sched`` on each claim, so a change made
here (by TaskScheduler, ConcurrentModuleManager(scheduling_policy=...) or
``piano-dist policy``) holds for every worker process on every machine at its next
claim. See docs/scheduling.md.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum

import redis

from .arguments import is_whole
from .keys import Keys
from .scripts import ScriptSet

DEFAULT_AGING_SECONDS = 5.0


class SchedulingPolicy(str, Enum):
    PRIORITY_FIRST = "priority_first"
    ROUND_ROBIN = "round_robin"
    FAIR_SHARE = "fair_share"
    SHORTEST_JOB_FIRST = "shortest_job_first"  # as in the seed: the same order as PRIORITY_FIRST
    WEIGHTED_PRIORITY = "weighted_priority"

    @classmethod
    def parse(cls, value: "SchedulingPolicy | str") -> "SchedulingPolicy":
        try:
            return cls(value.lower() if isinstance(value, str) else value)
        except ValueError:
            raise ValueError(f"unknown scheduling policy {value!r}; policies: "
                             f"{', '.join(p.value for p in cls)}") from None


@dataclass
class PolicyConfig:
    policy: SchedulingPolicy = SchedulingPolicy.PRIORITY_FIRST
    aging_interval: float = DEFAULT_AGING_SECONDS
    enable_fairness: bool = False
    quotas: dict[str, int] = field(default_factory=dict)


def check_quota(module: str, quota: object) -> int:
    if not isinstance(module, str) or not module:
        raise ValueError(f"module must be a non-empty name, not {module!r}")
    if not is_whole(quota) or quota < 1:
        raise ValueError(f"quota for module {module!r} must be an integer >= 1 (its most running "
                         f"tasks across the cluster), not {quota!r}")
    return quota


class PolicyStore:
    """Read and change the cluster's policy, aging interval and quotas."""

    def __init__(self, connection: redis.Redis, keys: Keys):
        self.connection = connection
        self.keys = keys
        self.scripts = ScriptSet(connection)

    def set_policy(self, policy: SchedulingPolicy | str, aging_interval: float | None = None,
                   enable_fairness: bool | None = None) -> int:
        """Set the policy (atomically with the index ROUND_ROBIN/FAIR_SHARE need).
        Returns how many queued tasks were indexed."""
        policy = SchedulingPolicy.parse(policy)
        if aging_interval is not None and (isinstance(aging_interval, bool)
                                           or not isinstance(aging_interval, (int, float)) or aging_interval <= 0):
            raise ValueError(f"aging_interval must be a positive number of seconds, not {aging_interval!r}")
        # The cluster's queues and every standalone scheduler's (queue groups), so that
        # entering ROUND_ROBIN or FAIR_SHARE indexes the tasks already queued in any of them.
        groups = sorted(v.decode() for v in self.connection.smembers(self.keys.sched_part("origins")))
        return int(self.scripts.sched_set_policy(
            keys=[self.keys.sched],
            args=[self.keys.prefix, policy.value, "" if aging_interval is None else int(aging_interval * 1000),
                  "" if enable_fairness is None else ("1" if enable_fairness else "0"),
                  json.dumps(self.keys.queue_names + groups)]))

    def add_origins(self, queue_names: list[str]) -> None:
        self.connection.sadd(self.keys.sched_part("origins"), *queue_names)

    def remove_origins(self, queue_names: list[str]) -> None:
        self.connection.srem(self.keys.sched_part("origins"), *queue_names)

    def get(self) -> PolicyConfig:
        raw = self.connection.hmget(self.keys.sched, "policy", "aging_ms", "fairness")
        quotas = self.connection.hgetall(self.keys.sched_part("quota"))
        return PolicyConfig(
            policy=SchedulingPolicy(raw[0].decode()) if raw[0] else SchedulingPolicy.PRIORITY_FIRST,
            aging_interval=int(raw[1]) / 1000 if raw[1] else DEFAULT_AGING_SECONDS,
            enable_fairness=raw[2] == b"1",
            quotas={k.decode(): int(v) for k, v in quotas.items()})

    def set_quota(self, module: str, quota: int) -> None:
        self.connection.hset(self.keys.sched_part("quota"), module, check_quota(module, quota))

    def clear_quota(self, module: str) -> bool:
        return bool(self.connection.hdel(self.keys.sched_part("quota"), module))

    def running_by_module(self) -> dict[str, int]:
        rows = self.connection.hgetall(self.keys.sched_part("running"))
        return {k.decode(): int(v) for k, v in rows.items() if int(v) > 0}
