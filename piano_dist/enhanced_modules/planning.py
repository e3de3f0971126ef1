"""ConcurrentPlanningModule: plans for several goals at once and acts as the agent's
controller: its decision (``act_description``) is what other modules read.

One run: read the active goals from the agent's state, plan the top
``max_concurrent_goals`` concurrently (one LLM call each: that wait is what runs in
parallel), pick the most important goal's next step as the decision, and write
``goals``, ``current_plan`` and ``act_description`` in one StateCoordinator
transaction, so every process sees the goal, its plan and the decision change together.
"""
from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

import redis

from ..core.fanout import fan_out
from .plumbing import (ConfiguredModule, associative_memory, latest_nodes, resolve_agent_id, resolve_connection,
                       resolve_llm)
from .state_access import AgentStateAccess

_NUMBERED = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s*")


def parse_steps(text: str, limit: int) -> list[str]:
    """Lines of an LLM's numbered or bulleted list, without their markers."""
    steps = [_NUMBERED.sub("", line).strip() for line in text.splitlines()]
    return [s for s in steps if s][:limit]


class ConcurrentPlanningModule(ConfiguredModule):
    GOALS, PLAN, DECISION = "goals", "current_plan", "act_description"

    def __init__(self, agent_state: Any = None, max_concurrent_goals: int = 3, steps_per_plan: int = 4,
                 *, agent_id: str | None = None, module_id: str = "planning", llm: Any = "auto",
                 context_events: int = 5, memory_name: str = "default", state_coordinator: Any = None,
                 connection: redis.Redis | None = None, redis_url: str | None = None,
                 prefix: str | None = None):
        """``llm``: a client, "fake"/"openai", or "auto" (PIANO_LLM). ``state_coordinator``:
        the manager's (``manager.state_coordinator``) to share its subscribers; else one
        is built for the agent."""
        if not isinstance(max_concurrent_goals, int) or max_concurrent_goals < 1:
            raise ValueError(f"max_concurrent_goals must be a positive int, not {max_concurrent_goals!r}")
        super().__init__(agent_state, max_concurrent_goals=max_concurrent_goals, steps_per_plan=steps_per_plan,
                         agent_id=agent_id, module_id=module_id, llm=llm if isinstance(llm, str) else None,
                         context_events=context_events, memory_name=memory_name, redis_url=redis_url,
                         prefix=prefix)
        self.max_concurrent_goals = max_concurrent_goals
        self.steps_per_plan = steps_per_plan
        self.context_events = context_events
        self.connection = resolve_connection(agent_state, connection, redis_url)
        self.agent_id = resolve_agent_id(agent_state, agent_id)
        self.module_id = module_id
        self.llm = resolve_llm(llm, self.connection)
        self.state = AgentStateAccess(agent_state, self.agent_id, module_id, self.connection, prefix,
                                      state_coordinator)
        self._memory = associative_memory(self.agent_id, memory_name, self.connection, prefix)

    # --- goals --------------------------------------------------------------------------
    def get_goals(self) -> list[dict[str, Any]]:
        return list(self.state.get(self.GOALS, []) or [])

    def add_goal(self, description: str, priority: float = 0.5) -> dict[str, Any]:
        """Add an active goal (priority 0..1, higher first); returns it."""
        if not isinstance(description, str) or not description.strip():
            raise ValueError("a goal needs a non-empty description")
        goal = {"id": f"goal_{uuid.uuid4().hex[:8]}", "description": description.strip(),
                "priority": float(priority), "status": "active", "created": datetime.now().isoformat()}
        self.state.write({self.GOALS: self.get_goals() + [goal]})
        return goal

    # --- planning -----------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Plan the top goals concurrently and publish the decision; JSON result."""
        goals = self.get_goals()
        active = sorted((g for g in goals if g.get("status") in ("active", "planned")),
                        key=lambda g: (-g.get("priority", 0), g.get("created", "")))[:self.max_concurrent_goals]
        if not active:
            return {"agent_id": self.agent_id, "decision": self.state.get(self.DECISION), "plans": {},
                    "goal": None}
        context = self._context()
        plans = dict(zip((g["id"] for g in active), fan_out(lambda g: self.plan_goal(g, context), active)))
        chosen = active[0]
        steps = plans[chosen["id"]]
        decision = steps[0] if steps else chosen["description"]
        planned_ids = set(plans)
        new_goals = [{**g, "status": "planned"} if g["id"] in planned_ids and g.get("status") == "active" else g
                     for g in goals]
        plan = {"goal_id": chosen["id"], "goal": chosen["description"], "steps": steps, "step": 0,
                "plans": plans, "decided_by": self.module_id, "decided_at": datetime.now().isoformat()}
        # Goals are written only when a status changed: an unchanged list would only log
        # its old and new copies (the plan and the decision change every run).
        changes = {self.PLAN: plan, self.DECISION: decision}
        if new_goals != goals:
            changes = {self.GOALS: new_goals, **changes}
        version = self.state.write(changes)
        return {"agent_id": self.agent_id, "decision": decision, "goal": chosen["description"],
                "plans": plans, "state_version": version}

    def plan_goal(self, goal: dict[str, Any], context: list[str]) -> list[str]:
        """Steps toward one goal (one LLM call); at least the goal itself."""
        if self.llm is None:
            return [goal["description"]]
        prompt = (f"You are {self.agent_id}. Recent observations: {'; '.join(context) or 'none'}.\n"
                  f"List {self.steps_per_plan} short steps to achieve this goal: {goal['description']}")
        steps = parse_steps(self.llm.complete(prompt), self.steps_per_plan)
        return steps or [goal["description"]]

    def advance(self) -> dict[str, Any]:
        """Mark the current step done: the next step becomes the decision, and a plan
        whose steps are all done completes its goal."""
        plan = self.state.get(self.PLAN)
        if not plan:
            return {"agent_id": self.agent_id, "decision": None, "completed_goal": None}
        step = plan["step"] + 1
        if step < len(plan["steps"]):
            decision = plan["steps"][step]
            self.state.write({f"{self.PLAN}.step": step, self.DECISION: decision})
            return {"agent_id": self.agent_id, "decision": decision, "completed_goal": None}
        goals = [{**g, "status": "completed"} if g["id"] == plan["goal_id"] else g for g in self.get_goals()]
        self.state.write({self.GOALS: goals, self.PLAN: None, self.DECISION: None})
        return {"agent_id": self.agent_id, "decision": None, "completed_goal": plan["goal_id"]}

    def _context(self) -> list[str]:
        """The agent's latest perceived events, as planning context."""
        events = latest_nodes(self._memory, "event", self.context_events)
        return [e.description for e in events]

    def get_planning_status(self) -> dict[str, Any]:
        goals = self.get_goals()
        return {"agent_id": self.agent_id, "goals": len(goals),
                "active_goals": sum(1 for g in goals if g.get("status") in ("active", "planned")),
                "decision": self.state.get(self.DECISION), "llm": type(self.llm).__name__ if self.llm else None}

    def shutdown(self) -> None:
        self.state.close()
