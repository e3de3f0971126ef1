"""AgentActionModule: carry out the controller's decision in the shared world.

The planning module (the agent's controller) writes ``act_description``; this module
reads it, takes one step on the grid under the WRITE lock of the world resource
(fenced, so a holder whose lease lapsed cannot overwrite a newer move), leaves an
event on the tile and remembers what it did in the agent's associative memory.
"""
from __future__ import annotations

import random
import time
from datetime import datetime
from typing import Any

import redis

from ..enhanced_modules.plumbing import associative_memory, resolve_agent_id, resolve_connection
from ..keys import Keys
from ..modules.base import BaseModule
from ..resources import AccessMode, ResourceCoordinator
from ..state import RedisAgentState
from ..world import GridWorld

STEPS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


class AgentActionModule(BaseModule):
    def __init__(self, agent_state: Any = None, *, agent_id: str | None = None, world: str = "town",
                 seed: int = 0, run_id: str = "demo", lock_timeout: float = 30.0,
                 connection: redis.Redis | None = None, redis_url: str | None = None,
                 prefix: str | None = None):
        super().__init__(agent_state, agent_id=agent_id, world=world, seed=seed, run_id=run_id,
                         lock_timeout=lock_timeout, redis_url=redis_url, prefix=prefix)
        self.connection = resolve_connection(agent_state, connection, redis_url)
        self.agent_id = resolve_agent_id(agent_state, agent_id)
        self.keys = Keys(prefix)
        self.world = GridWorld(world, connection=self.connection, prefix=prefix)
        self.seed = seed
        self.run_id = run_id
        self.lock_timeout = lock_timeout
        self._coordinator: ResourceCoordinator | None = None
        self._memory = associative_memory(self.agent_id, "default", self.connection, prefix)
        self._state = RedisAgentState(self.agent_id, connection=self.connection, prefix=prefix)

    @property
    def registration_config(self) -> dict[str, Any]:
        return {k: v for k, v in self.config.items() if v is not None}

    @property
    def coordinator(self) -> ResourceCoordinator:
        if self._coordinator is None:
            self._coordinator = ResourceCoordinator(connection=self.connection, prefix=self.keys.prefix)
            self.world.register_with(self._coordinator)
        return self._coordinator

    def run(self, tick: int = 0) -> dict[str, Any]:
        decision = self._state.get("act_description") or "wander"
        # The step depends only on (seed, agent, tick): a rerun after a crash moves the same way.
        rng = random.Random(f"{self.seed}:{self.agent_id}:{tick}")
        dx, dy = rng.choice(STEPS)
        width, height = self.world.size
        # Only this agent's own actions move it, and they run one after another (each tick
        # depends on the last), so its position can be read before taking the lock: the
        # lock covers just the two writes that must land together.
        here = self.world.agent_position(self.agent_id) or (0, 0)
        x = min(max(here[0] + dx, 0), width - 1)
        y = min(max(here[1] + dy, 0), height - 1)
        activity = str(decision)[:120]
        asked = time.monotonic()
        with self.coordinator.acquire_context(self.world.resource_id, AccessMode.WRITE,
                                              f"action.{self.agent_id}", timeout=self.lock_timeout):
            waited = time.monotonic() - asked
            self.world.step_agent(self.agent_id, x, y, activity)
        self._memory.add_event(datetime.now(), None, self.agent_id, "is", activity,
                               f"{self.agent_id} is {activity} at ({x}, {y})", [activity.split(" ")[0]],
                               rng.randint(1, 9), None, None)
        stats = self.keys.demo_stats(self.run_id)
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.hincrby(stats, "actions", 1)
            pipe.hincrbyfloat(stats, "lock_wait_seconds", waited)
            if waited > 0.005:
                pipe.hincrby(stats, "lock_waits", 1)
            pipe.execute()
        return {"agent_id": self.agent_id, "tick": tick, "x": x, "y": y, "activity": activity,
                "lock_wait_ms": round(waited * 1000, 3)}

    def shutdown(self) -> None:
        if self._coordinator is not None:
            self._coordinator.shutdown()
