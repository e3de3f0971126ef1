"""W7 agents: the demo's workload (piano_dist.demo) with the fake LLM (median 50 ms) at
25 and 200 agents, 2 worker processes × 32 slots: agent-steps/s, the ratio to the model
oracle (demo/oracle.py), CPU per task and Redis commands per agent-step, as the demo's
own report computes them."""
from __future__ import annotations

KEY = "w7"
AGENTS = {"full": (25, 200), "quick": (25,), "tiny": (2,)}
TICKS = {"full": 5, "quick": 3, "tiny": 1}


def run(url: str, mode: str) -> dict:
    from piano_dist.demo import DemoConfig, DemoRun

    out = {}
    for agents in AGENTS[mode]:
        config = DemoConfig(agents=agents, ticks=TICKS[mode], workers=2, concurrency=32, llm_latency=0.05,
                            report_path=None)
        report = DemoRun(config, redis_url=url).run()
        out[str(agents)] = {"agents": agents, "ticks": config.ticks, "wall_s": report["wall_seconds"],
                            "steps": report["agent_steps"], "steps_per_s": report["agent_steps_per_second"],
                            "oracle_s": report["oracle_seconds"], "ratio_to_oracle": report["ratio_to_oracle"],
                            "cpu_ms_per_task": report["cpu_ms_per_task"],
                            "redis_commands_per_agent_step": report["redis_commands_per_agent_step"],
                            "completed": report["tasks_by_status"].get("completed", 0), "tasks": report["tasks"]}
    return out
