"""The demo's world, agents, module registrations and task graph.

One agent tick is perception (CRITICAL) → planning (HIGH) → action (HIGH), with
retrieval (NORMAL) alongside planning and reflection in the background (LOW). An
agent's tick t+1 waits only for its own tick t's action: there is no global barrier.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..core.client import SUBMIT_CHUNK, TaskSpec
from ..core.registry import ModuleRegistry
from ..core.types import Priority
from ..enhanced_modules import (ConcurrentPlanningModule, DistributedReflectionModule,
                                MemoryRetrievalModule, ParallelPerceptionModule)
from ..state import RedisAgentState
from ..world import GridWorld
from .action import AgentActionModule

GOALS = (
    "bake bread for the morning market", "finish the town mural", "organise the harvest festival",
    "learn the names of every neighbour", "repair the old clock tower", "write a letter to a friend",
    "find fresh herbs by the river", "practise the violin before the concert",
    "help a neighbour move house", "plan a surprise party at the cafe",
)

# kind → (task id suffix, priority)
STEPS = {"perceive": Priority.CRITICAL, "plan": Priority.HIGH, "act": Priority.HIGH,
         "recall": Priority.NORMAL, "reflect": Priority.LOW}


def agent_ids(n: int) -> list[str]:
    width = max(2, len(str(n)))
    return [f"agent{i:0{width}d}" for i in range(1, n + 1)]


def module_name(kind: str, agent: str) -> str:
    return f"{kind}.{agent}"


@dataclass
class Workload:
    run_id: str
    agents: list[str]
    ticks: int
    seed: int
    world_name: str = "town"
    result_ttl: int | None = 0  # seconds each task's record stays once it ends (None: PIANO_RESULT_TTL)
    # The least a task whose dependent a later submission names keeps its record: it must
    # outlive the submission, which takes seconds (an hour whatever the run's timeout).
    handoff_ttl: int = 3600

    def task_id(self, agent: str, tick: int, kind: str) -> str:
        return f"{self.run_id}-{agent}-t{tick}-{kind}"

    # --- setup ----------------------------------------------------------------------
    def build_world(self, connection, prefix: str | None) -> GridWorld:
        side = max(8, math.ceil(math.sqrt(len(self.agents) * 6)))
        return GridWorld.create(self.world_name, side, side, seed=self.seed,
                                n_objects=min(24, side * side // 4), agents=self.agents,
                                connection=connection, prefix=prefix)

    def seed_agents(self, connection, prefix: str | None) -> None:
        rng = random.Random(self.seed)
        now = datetime.now().isoformat()
        for agent in self.agents:
            state = RedisAgentState(agent, connection=connection, prefix=prefix)
            goals = [{"id": f"goal_{agent}_{i}", "description": text, "priority": round(1.0 - i * 0.3, 2),
                      "status": "active", "created": now}
                     for i, text in enumerate(rng.sample(GOALS, 2))]
            state.set("name", agent)
            state.set("goals", goals)
            state.set("act_description", "waking up")

    def register_modules(self, registry: ModuleRegistry, prefix: str | None) -> None:
        """Each agent's five modules, built by workers from (class, JSON config).

        One prototype per kind gives the class path and runnable methods; only the
        config (agent_id, world, llm) differs per agent."""
        connection = registry.connection
        prototypes = {
            # Its sensors do not call the model here: recomputing them costs less than the
            # cache's round trip and memory (the cache pays when describe_with_llm is on).
            "perceive": ParallelPerceptionModule(None, agent_id=self.agents[0], world=self.world_name,
                                                 store_percepts=True, enable_caching=False,
                                                 connection=connection, prefix=prefix),
            "plan": ConcurrentPlanningModule(None, max_concurrent_goals=2, agent_id=self.agents[0], llm="auto",
                                             connection=connection, prefix=prefix),
            "act": AgentActionModule(None, agent_id=self.agents[0], world=self.world_name, seed=self.seed,
                                     run_id=self.run_id, connection=connection, prefix=prefix),
            "recall": MemoryRetrievalModule(None, n=5, agent_id=self.agents[0], connection=connection,
                                            prefix=prefix),
            "reflect": DistributedReflectionModule(None, importance_threshold=25, agent_id=self.agents[0],
                                                   llm="auto", connection=connection, prefix=prefix),
        }
        try:
            for kind, prototype in prototypes.items():
                base = prototype.registration_config
                for agent in self.agents:
                    registry.register(module_name(kind, agent), prototype, {**base, "agent_id": agent},
                                      agent_id=agent)
        finally:
            for prototype in prototypes.values():
                prototype.shutdown()

    # --- the task graph ---------------------------------------------------------------
    def batches(self, limit: int = SUBMIT_CHUNK) -> list[list[TaskSpec]]:
        """Every task of the run in submissions of at most ``limit`` (each one script,
        so none of its tasks can end before all of it is stored), parents first.

        An agent's ticks go together, whole agents per submission where they fit. The
        run's id is the tasks' group (its progress is one counter read); their return
        values are not kept, and their records stay ``result_ttl`` seconds once they end
        (0 by default: the report is built from the tasks' events, and nothing reads a
        tick's record once its dependents are released). A task whose dependent comes in
        a later submission keeps its record ``handoff_ttl`` seconds, so that the later
        submission still finds it."""
        per_batch = max(1, limit // len(STEPS))  # agent-ticks in one submission
        groups: list[list[tuple[str, int]]] = []  # (agent, tick) of each submission
        current: list[tuple[str, int]] = []
        for agent in self.agents:
            ticks = [(agent, t) for t in range(self.ticks)]
            if len(ticks) <= per_batch and len(current) + len(ticks) > per_batch:
                groups.append(current)
                current = []
            while ticks:
                room = per_batch - len(current)
                current += ticks[:room]
                ticks = ticks[room:]
                if ticks:
                    groups.append(current)
                    current = []
        if current:
            groups.append(current)
        batches = []
        for group in groups:
            members = set(group)
            batches.append([spec for agent, tick in group
                            for spec in self._tick_specs(agent, tick, next_tick_with=(agent, tick + 1) in members)])
        return batches

    def specs(self) -> list[TaskSpec]:
        """Every task of the run, parents first (the batches, one after the other)."""
        return [spec for batch in self.batches() for spec in batch]

    def _tick_specs(self, agent: str, tick: int, next_tick_with: bool) -> list[TaskSpec]:
        ids = {kind: self.task_id(agent, tick, kind) for kind in STEPS}
        previous = [self.task_id(agent, tick - 1, "act")] if tick else None
        goal_hint = ["what should I do next"]
        common = {"group": self.run_id, "keep_result": False, "result_ttl": self.result_ttl}
        # The action is the one task with a dependent in another tick (the next perception).
        handoff = tick + 1 < self.ticks and not next_tick_with
        act_ttl = self.result_ttl
        if handoff and act_ttl is not None and act_ttl < self.handoff_ttl:
            act_ttl = self.handoff_ttl
        return [
            TaskSpec(module_name("perceive", agent), "run", priority=STEPS["perceive"],
                     dependencies=previous, task_id=ids["perceive"], **common),
            TaskSpec(module_name("plan", agent), "run", priority=STEPS["plan"],
                     dependencies=[ids["perceive"]], task_id=ids["plan"], **common),
            TaskSpec(module_name("recall", agent), "run", kwargs={"focal_points": goal_hint},
                     priority=STEPS["recall"], dependencies=[ids["perceive"]], task_id=ids["recall"],
                     **common),
            TaskSpec(module_name("act", agent), "run", kwargs={"tick": tick}, priority=STEPS["act"],
                     dependencies=[ids["plan"]], task_id=ids["act"], **{**common, "result_ttl": act_ttl}),
            TaskSpec(module_name("reflect", agent), "run", priority=STEPS["reflect"],
                     dependencies=[ids["perceive"]], task_id=ids["reflect"], **common),
        ]

    def unregister_modules(self, registry: ModuleRegistry) -> None:
        for kind in STEPS:
            for agent in self.agents:
                registry.connection.hdel(registry.keys.modules, module_name(kind, agent))


def summarise_statuses(workload: Workload, statuses: dict[str, dict | None]) -> dict[str, Any]:
    """Per-agent tick latencies (a tick: its perception's start to its action's end)."""
    latencies = []
    for agent in workload.agents:
        for tick in range(workload.ticks):
            first = statuses.get(workload.task_id(agent, tick, "perceive")) or {}
            last = statuses.get(workload.task_id(agent, tick, "act")) or {}
            if first.get("started_at") and last.get("ended_at") and last.get("status") == "completed":
                latencies.append(last["ended_at"] - first["started_at"])
    return {"tick_latencies": latencies}
