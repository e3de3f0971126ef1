"""W2 I/O-bound: N tasks that sleep 50 ms; wall time of the drain (first start to last
end) and its ratio to the ideal N × 0.05 s / total slots."""
from __future__ import annotations

from .common import job_window, wait_count

KEY = "w2"
SLEEP = 0.05


def run(target, n: int, slots: int) -> dict:
    ids = target.submit("sleep", n, args=(SLEEP,))
    base = target.finished()
    target.release()
    wait_count(lambda: target.finished() - base, n, timeout=max(120, n * SLEEP), what="W2 drain")
    first, last = job_window(target.conn, ids)
    ideal = n * SLEEP / slots
    return {"tasks": n, "slots": slots, "wall_s": last - first, "ideal_s": ideal,
            "ratio_to_ideal": (last - first) / ideal}
