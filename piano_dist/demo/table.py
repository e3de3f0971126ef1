"""The demo's closing summary as a plain-text table."""
from __future__ import annotations

from typing import Any

from ..llm.report import llm_report_rows

ROWS = (
    ("agents × ticks", lambda r: f"{r['config']['agents']} × {r['config']['ticks']}"),
    ("workers × slots", lambda r: ("external" if r["config"]["external_workers"]
                                   else f"{r['config']['workers']} × {r['config']['concurrency']}")),
    ("wall time", lambda r: f"{r['wall_seconds']:.2f} s"),
    ("agent-steps/s", lambda r: f"{r['agent_steps_per_second']}"),
    ("ticks/s (per agent)", lambda r: f"{r['ticks_per_second']}"),
    ("tick latency p50 / p95", lambda r: f"{_ms(r['tick_latency_p50_seconds'])} / {_ms(r['tick_latency_p95_seconds'])}"),
    ("model oracle", lambda r: f"{r['oracle_seconds']:.2f} s (ratio {r['ratio_to_oracle']}; model chain "
                               f"{r['oracle_chain_seconds']:.2f} s, model time ÷ {r['slots']} slots "
                               f"{r['oracle_work_seconds']:.2f} s)"),
    ("tasks by status", lambda r: ", ".join(f"{k} {v}" for k, v in sorted(r["tasks_by_status"].items()))),
    ("CPU per task (workers)", lambda r: f"{r['cpu_ms_per_task']} ms"),
    ("Redis per agent-step", lambda r: f"{r['redis_commands_per_agent_step']} commands"),
    ("Redis per task", lambda r: f"{r['redis_bytes_per_task']} bytes ({r['redis_used_memory_bytes'] / 2**20:.1f} MiB in use)"),
    ("world steps", lambda r: f"moved {r.get('steps_moved', 0)}, blocked {r.get('steps_blocked', 0)}, "
                              f"replayed {r.get('steps_replayed', 0)}"),
    ("memories / thoughts", lambda r: f"{r['memory_events']} / {r['memory_thoughts']}"),
    ("state changes / conflicts", lambda r: f"{r['state_changes']} / {r['state_conflicts_resolved']}"),
    ("model calls (peak in flight)", lambda r: f"{r['model_calls']} ({r['llm_in_flight_peak']})"),
    *llm_report_rows(),
)


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.0f} ms"


def render(report: dict[str, Any]) -> str:
    width = max(len(label) for label, _ in ROWS)
    lines = [f"{label:<{width}}  {fmt(report)}" for label, fmt in ROWS]
    rule = "-" * max(len(line) for line in lines)
    return "\n".join([rule, *lines, rule])
