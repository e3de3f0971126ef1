"""AgentActionModule: carry out the controller's decision in the shared world.

The planning module (the agent's controller) writes ``act_description``; this module
reads it, takes one step on the grid and remembers what it did in the agent's
associative memory. The step is one atomic world write that claims the target tile
(docs/world.md): agents far apart never wait for each other, and two agents heading
for the same tile cannot both get it. The step carries the tick, so a task re-run
after its worker died replays instead of moving twice.
"""
from __future__ import annotations

import random
from datetime import datetime
from typing import Any

import redis

from ..enhanced_modules.plumbing import ConfiguredModule, associative_memory, resolve_agent_id, resolve_connection
from ..keys import Keys
from ..state import RedisAgentState
from ..world import GridWorld

STEPS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


class AgentActionModule(ConfiguredModule):
    def __init__(self, agent_state: Any = None, *, agent_id: str | None = None, world: str = "town",
                 seed: int = 0, run_id: str = "demo", connection: redis.Redis | None = None,
                 redis_url: str | None = None, prefix: str | None = None):
        super().__init__(agent_state, agent_id=agent_id, world=world, seed=seed, run_id=run_id,
                         redis_url=redis_url, prefix=prefix)
        self.connection = resolve_connection(agent_state, connection, redis_url)
        self.agent_id = resolve_agent_id(agent_state, agent_id)
        self.keys = Keys(prefix)
        self.world = GridWorld(world, connection=self.connection, prefix=prefix)
        self.seed = seed
        self.run_id = run_id
        self._memory = associative_memory(self.agent_id, "default", self.connection, prefix)
        self._state = RedisAgentState(self.agent_id, connection=self.connection, prefix=prefix)

    def run(self, tick: int = 0) -> dict[str, Any]:
        decision = self._state.get("act_description") or "wander"
        # The step depends only on (seed, agent, tick): a rerun after a crash moves the same way.
        rng = random.Random(f"{self.seed}:{self.agent_id}:{tick}")
        dx, dy = rng.choice(STEPS)
        activity = str(decision)[:120]
        step = self.world.step(self.agent_id, dx, dy, activity, tick)
        x, y = step["x"], step["y"]
        # Keyed by run and tick: a re-run after a crash writes the memory the first run
        # may not have written, and never a second copy of it.
        self._memory.add_event(datetime.now(), None, self.agent_id, "is", activity,
                               f"{self.agent_id} is {activity} at ({x}, {y})", [activity.split(" ")[0]],
                               rng.randint(1, 9), None, None, dedupe=f"act:{self.run_id}:{tick}")
        self.connection.hincrby(self.keys.demo_stats(self.run_id), f"steps_{step['outcome']}", 1)
        return {"agent_id": self.agent_id, "tick": tick, "x": x, "y": y, "activity": activity,
                "outcome": step["outcome"]}
