"""W3 dependency hop: a chain of N tasks, each depending on the one before. A hop is
the time from the end of one task's body to the start of the next one's body (both
taken inside the tasks with time.time(); same machine clock)."""
from __future__ import annotations

from .common import median, pct, wait_count

KEY = "w3"


def run(target, n: int) -> dict:
    base = target.finished(staged=False)
    ids = target.submit_chain(n)
    wait_count(lambda: target.finished(staged=False) - base, n, timeout=max(60, n * 0.2), what="W3 chain")
    stamps = target.results(ids)
    hops = [(stamps[i][0] - stamps[i - 1][1]) * 1000 for i in range(1, n)]
    return {"hops": len(hops), "hop_ms_p50": median(hops), "hop_ms_p95": pct(hops, 0.95),
            "hop_ms_max": max(hops)}
