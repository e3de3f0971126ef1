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
    ("ideal wall time", lambda r: f"{r['critical_path_ideal_seconds']:.2f} s (ratio {r['ratio_to_ideal']}; "
                                  f"critical path {r['critical_path_seconds']:.2f} s, "
                                  f"work ÷ {r['slots']} slots {r['work_bound_seconds']:.2f} s)"),
    ("tasks by status", lambda r: ", ".join(f"{k} {v}" for k, v in sorted(r["tasks_by_status"].items()))),
    ("lock waits", lambda r: f"{r['lock_waits']} ({r['lock_wait_seconds']:.3f} s in all)"),
    ("state changes / conflicts", lambda r: f"{r['state_changes']} / {r['state_conflicts_resolved']}"),
    ("LLM calls (peak in flight)", lambda r: f"{r['llm_calls']} ({r['llm_in_flight_peak']})"),
    *llm_report_rows(),
)


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.0f} ms"


def render(report: dict[str, Any]) -> str:
    width = max(len(label) for label, _ in ROWS)
    lines = [f"{label:<{width}}  {fmt(report)}" for label, fmt in ROWS]
    rule = "-" * max(len(line) for line in lines)
    return "\n".join([rule, *lines, rule])
