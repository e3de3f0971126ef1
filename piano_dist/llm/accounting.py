"""Model-call accounting in Redis: per module, per agent, per endpoint and in total.

Each call adds to four hashes (HINCRBY is O(1)), through the process's tally of counter
increments, which sums them and sends them with other bookkeeping; latency
percentiles come from a log-spaced histogram kept in the same hashes (20 buckets per
decade, so a percentile is within ±6 %), which adds and subtracts like the counters do:
a report over one run is the difference of two snapshots.
"""
from __future__ import annotations

import logging
import math
from typing import Iterable

import redis

from ..keys import Keys
from .records import CallRecord

log = logging.getLogger("piano_dist.llm")

SCOPES = ("module", "agent", "endpoint")
TOTAL = ("total", "all")
OUTSIDE = "-"  # the module/agent of calls made outside any task
MAX_NAME = 200
BUCKETS_PER_DECADE = 20
_LAT = "lat:"
COUNTERS = ("calls", "cache_hits", "requests", "errors", "rate_limited", "prompt_tokens", "completion_tokens",
            "limiter_waits")
SECONDS = ("model_seconds", "limiter_wait_seconds", "retry_wait_seconds")


def latency_bucket(seconds: float) -> int:
    ms = max(seconds * 1000.0, 1.0)
    return max(0, math.ceil(BUCKETS_PER_DECADE * math.log10(ms) - 1e-9))


def bucket_seconds(bucket: int) -> float:
    """A bucket's representative latency (its geometric middle)."""
    return 10 ** ((bucket - 0.5) / BUCKETS_PER_DECADE) / 1000.0 if bucket > 0 else 0.001


def _name(value: str | None) -> str:
    if not value:
        return OUTSIDE
    text = str(value)
    return text if len(text) <= MAX_NAME else text[:MAX_NAME]


class Accounting:
    def __init__(self, connection: redis.Redis, keys: Keys):
        self.connection = connection
        self.keys = keys

    def add(self, records: Iterable[CallRecord], tally) -> None:
        """Add calls to their module's, agent's and endpoint's counters and the total,
        through ``tally`` (core.tally): summed per target first, so a task's calls, which
        share its module and agent, cost one set of increments, and tasks ending together
        share the total's and the endpoint's."""
        for rec in records:
            targets = [self.keys.llm_account(*TOTAL)]
            for scope, name in (("module", _name(rec.module)), ("agent", _name(rec.agent)),
                                ("endpoint", rec.endpoint)):
                targets.append(self.keys.llm_account(scope, name))
                tally.sadd(self.keys.llm_account_index(scope), name)
            amounts: dict[str, int | float] = {field: int(n) for field, n in _increments(rec).items()}
            seconds = {"model_seconds": rec.model_seconds, "limiter_wait_seconds": rec.limiter_wait_seconds,
                       "retry_wait_seconds": rec.retry_wait_seconds}
            if rec.cost is not None:
                seconds["cost"] = rec.cost
            amounts.update((field, float(s)) for field, s in seconds.items() if s > 0)
            for key in targets:
                tally.incr_fields(key, amounts)

    # --- reading --------------------------------------------------------------------
    def raw(self, scope: str, names: Iterable[str]) -> dict[str, dict[str, float]]:
        names = list(names)
        pipe = self.connection.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(self.keys.llm_account(scope, name))
        return {name: _numbers(fields) for name, fields in zip(names, pipe.execute()) if fields}

    def names(self, scope: str) -> list[str]:
        return sorted(_text(n) for n in self.connection.smembers(self.keys.llm_account_index(scope)))

    def total_raw(self) -> dict[str, float]:
        return _numbers(self.connection.hgetall(self.keys.llm_account(*TOTAL)))

    def summary(self) -> dict:
        """Everything, as ``piano-dist llm --json`` prints it."""
        out = {"total": summarise(self.total_raw())}
        for scope in SCOPES:
            out[scope + "s"] = {name: summarise(raw) for name, raw in self.raw(scope, self.names(scope)).items()}
        return out

    def reset(self) -> int:
        """Forget every counter (not the cache, not the limiter's state); returns keys removed."""
        keys = [self.keys.llm_account(*TOTAL)]
        for scope in SCOPES:
            keys += [self.keys.llm_account(scope, n) for n in self.names(scope)]
            keys.append(self.keys.llm_account_index(scope))
        removed = 0
        for i in range(0, len(keys), 500):
            removed += self.connection.delete(*keys[i:i + 500])
        return removed


def _increments(rec: CallRecord) -> dict[str, int]:
    counts = {"calls": 1, "cache_hits": int(rec.cache_hit), "requests": rec.requests,
              "errors": int(rec.error is not None), "rate_limited": rec.rate_limited,
              "prompt_tokens": rec.prompt_tokens, "completion_tokens": rec.completion_tokens,
              "limiter_waits": int(rec.limiter_waited)}
    if rec.latency_seconds is not None:
        counts[f"{_LAT}{latency_bucket(rec.latency_seconds)}"] = 1
    return counts


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _numbers(fields: dict) -> dict[str, float]:
    """Counter fields as numbers; anything unreadable (Redis is not trusted) is dropped."""
    out: dict[str, float] = {}
    for key, value in (fields or {}).items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out[_text(key)] = number
    return out


def difference(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)}


def percentile_from(raw: dict[str, float], q: float) -> float | None:
    buckets = []
    for field, count in raw.items():
        if field.startswith(_LAT) and count > 0:
            try:
                buckets.append((int(field[len(_LAT):]), count))
            except ValueError:
                continue
    if not buckets:
        return None
    buckets.sort()
    total = sum(c for _, c in buckets)
    rank = q * total
    running = 0.0
    for bucket, count in buckets:
        running += count
        if running >= rank:
            return bucket_seconds(bucket)
    return bucket_seconds(buckets[-1][0])


def summarise(raw: dict[str, float]) -> dict:
    group = {field: int(raw.get(field, 0)) for field in COUNTERS}
    group.update({field: round(raw.get(field, 0.0), 3) for field in SECONDS})
    group["cost"] = round(raw["cost"], 6) if "cost" in raw else None
    group["cache_hit_rate"] = round(group["cache_hits"] / group["calls"], 4) if group["calls"] else None
    for name, q in (("latency_p50_seconds", 0.5), ("latency_p95_seconds", 0.95)):
        value = percentile_from(raw, q)
        group[name] = None if value is None else round(value, 4)
    return group
