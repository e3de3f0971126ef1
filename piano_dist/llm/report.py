"""Model-call figures for people: the whole cluster (`piano-dist llm`) and one demo run."""
from __future__ import annotations

import json
from typing import Any

import redis

from ..keys import Keys
from .accounting import Accounting, difference, summarise
from .limiter import endpoint_status


def cluster_report(connection: redis.Redis, keys: Keys) -> dict[str, Any]:
    """``{"total": {…}, "modules": {name: {…}}, "agents": {…}, "endpoints": {"URL model": {…}},
    "endpoint_status": {"URL model": {paused_for_seconds, in_flight}}}``; each group holds
    calls, prompt_tokens, completion_tokens, cost, cache_hits, cache_hit_rate, requests,
    errors, rate_limited (429s), limiter_waits, limiter_wait_seconds, retry_wait_seconds,
    model_seconds, latency_p50_seconds, latency_p95_seconds."""
    report = Accounting(connection, keys).summary()
    report["endpoint_status"] = {}
    for endpoint_id, raw in connection.hgetall(keys.llm_endpoints).items():
        try:
            info = json.loads(raw)
            label = f"{info['url']} {info['model']}"
        except (ValueError, KeyError, TypeError):
            continue  # not an entry we wrote
        endpoint_id = endpoint_id.decode() if isinstance(endpoint_id, bytes) else str(endpoint_id)
        report["endpoint_status"][label] = endpoint_status(connection, keys, endpoint_id)
    return report


def llm_snapshot(connection: redis.Redis, keys: Keys) -> dict[str, float]:
    """The cluster's model-call totals now; ``llm_report`` subtracts it later."""
    return Accounting(connection, keys).total_raw()


def llm_report(connection: redis.Redis, keys: Keys, before: dict[str, float] | None = None) -> dict[str, Any]:
    """The model calls made since ``before`` (a ``llm_snapshot``), for a run's report under
    the key "llm": calls, tokens, cost, cache hits, latency p50/p95 of the model alone,
    and the time spent waiting for the limiter, kept apart from it."""
    return summarise(difference(Accounting(connection, keys).total_raw(), before or {}))


def llm_report_rows() -> tuple:
    """Rows for the demo's text summary (label, report -> text)."""
    def group(r):
        return r.get("llm") or summarise({})

    def tokens(r):
        g = group(r)
        return f"{g['prompt_tokens']:,} in / {g['completion_tokens']:,} out"

    def cost(r):
        g = group(r)
        cost = "not priced (PIANO_LLM_PRICE_IN/OUT)" if g["cost"] is None else f"{g['cost']:,.6f}"
        rate = g["cache_hit_rate"]
        return f"{cost}; cache hits {g['cache_hits']}" + ("" if rate is None else f" ({rate:.0%})")

    def waits(r):
        g = group(r)
        p50, p95 = g["latency_p50_seconds"], g["latency_p95_seconds"]
        latency = "n/a" if p50 is None else f"{p50 * 1000:.0f} / {p95 * 1000:.0f} ms"
        return (f"{g['limiter_waits']} ({g['limiter_wait_seconds']:.2f} s); 429s {g['rate_limited']}; "
                f"model latency p50/p95 {latency}")

    return (("LLM tokens", tokens), ("LLM cost", cost), ("LLM limiter waits", waits))
