"""W6 state: IMMEDIATE propose_change ops/s from 4 processes (one agent, a path each);
notification latency from propose_change in one process to on_state_change of a
subscribed module in another (the proposed value is the sender's time.time())."""
from __future__ import annotations

import multiprocessing as mp
import time

import redis

from .common import median, pct
from .w5_locks import _get

KEY = "w6"
AGENT = "bench-agent"


def _coordinator(url):
    from piano_dist.state import StateCoordinator, SyncPolicy

    return StateCoordinator(None, SyncPolicy.IMMEDIATE, connection=redis.Redis.from_url(url), agent_id=AGENT)


def _writer(url, index, ops, start, out):
    coord = _coordinator(url)
    module = f"writer{index}"
    coord.register_module(module)
    coord.propose_change(module, f"w{index}", 0)  # warm
    start.wait()
    t0 = time.time()
    for i in range(ops):
        coord.propose_change(module, f"w{index}", i)
    t1 = time.time()
    coord.shutdown()
    out.put((t0, t1))


class _Subscriber:
    def __init__(self, out, expected):
        self.out, self.expected, self.latencies = out, expected, []

    def on_state_change(self, changes):
        now = time.time()
        for change in changes:
            if isinstance(change.new_value, float):
                self.latencies.append((now - change.new_value) * 1000)
        if len(self.latencies) >= self.expected:
            self.out.put(self.latencies)


def _subscriber(url, expected, ready, out):
    coord = _coordinator(url)
    sub = _Subscriber(out, expected)
    coord.register_module("sub", sub)
    coord.subscribe_to_path("sub", "lat")
    ready.set()
    time.sleep(120)  # killed by the parent once the latencies are in


def run(url: str, processes: int, ops: int, notifications: int) -> dict:
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(processes + 1, timeout=120), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(url, i, ops, start, out)) for i in range(processes)]
    for p in procs:
        p.start()
    start.wait()
    spans = [_get(out, procs) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    wall = max(s[1] for s in spans) - min(s[0] for s in spans)

    ready, lat_out = ctx.Event(), ctx.Queue()
    sub = ctx.Process(target=_subscriber, args=(url, notifications, ready, lat_out), daemon=True)
    sub.start()
    ready.wait(timeout=60)
    time.sleep(0.3)
    coord = _coordinator(url)
    coord.register_module("pub")
    for _ in range(notifications):
        coord.propose_change("pub", "lat", time.time())
        time.sleep(0.005)
    lat = _get(lat_out, [sub], 60)
    sub.terminate()
    sub.join(timeout=10)
    coord.shutdown()
    return {"processes": processes, "ops": processes * ops, "ops_per_s": processes * ops / wall,
            "notifications": len(lat), "notify_ms_p50": median(lat), "notify_ms_p95": pct(lat, 0.95)}
