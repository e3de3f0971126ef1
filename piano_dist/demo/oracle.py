"""The oracle: how fast the run could have been, from the model's latencies alone.

A generative-agent simulation is bound by its language model. Every model call records
its own duration (the fake model's sampled latency, or a real endpoint's), and each task
records the time it spent waiting on the model (overlapping calls counted once). No
schedule can beat either bound:

- the chain: the longest path of model time through the task graph (an agent's ticks,
  each waiting on the one before: its perception, then its planning, then its action);
- the work: all model time spread evenly over every slot.

``oracle_seconds`` is the larger. It is built only from inputs the system does not
control, so contention (locks, round trips, the GIL) can only make ``ratio_to_oracle``
(oracle ÷ wall) worse, never better.
"""
from __future__ import annotations

from typing import Any, Iterable


def model_oracle(specs: Iterable[Any], statuses: dict[str, dict | None], slots: int) -> dict[str, Any]:
    """``specs``: the submitted TaskSpecs, parents before children (as submit_many takes
    them); ``statuses``: task id → status dict (``model_seconds`` where the task called a
    model)."""
    chain: dict[str, float] = {}
    total = 0.0
    calls = 0
    for spec in specs:
        status = statuses.get(spec.task_id) or {}
        model = float(status.get("model_seconds") or 0.0)
        calls += int(status.get("model_calls") or 0)
        total += model
        chain[spec.task_id] = model + max((chain.get(p, 0.0) for p in spec.dependencies or ()), default=0.0)
    longest = max(chain.values(), default=0.0)
    work = total / slots if slots else 0.0
    return {"oracle_seconds": round(max(longest, work), 3), "chain_seconds": round(longest, 3),
            "work_seconds": round(work, 3), "model_seconds": round(total, 3), "model_calls": calls}
