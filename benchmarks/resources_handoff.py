"""Hand-off latency: time from release() in one process to the waiter's grant in another.

    python benchmarks/resources_handoff.py [--rounds 300]

Starts a private redis-server (never the machine's 6379). Not a test: prints figures.
The measurement lives in piano_dist/bench/w5_locks.py (handoff_one_waiter), which
`piano-dist bench` runs as part of W5.
"""
from __future__ import annotations

import argparse

from piano_dist.bench.common import BenchRedis, median, pct
from piano_dist.bench.w5_locks import handoff_one_waiter, register


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=300)
    rounds = parser.parse_args().rounds
    with BenchRedis() as server:
        register(server.url)
        waits_ms = sorted(handoff_one_waiter(server.url, rounds))
    print(f"hand-off release -> next holder, {rounds} rounds, 2 processes:")
    print(f"  median {median(waits_ms):.3f} ms  p90 {pct(waits_ms, 0.9):.3f} ms  max {waits_ms[-1]:.3f} ms")


if __name__ == "__main__":
    main()
