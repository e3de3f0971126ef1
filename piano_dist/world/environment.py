"""Environment: what perception needs from a world, independent of any one game.

A world answers three questions about an agent: where it is, what lies on the tiles
within its vision radius (objects, events), and which other agents are near. Every
answer is plain JSON data, so it can be hashed, cached and shipped to a worker.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

Position = tuple[int, int]


def distance(a: Position, b: Position) -> float:
    """Euclidean distance, rounded so equal views hash equally on every platform."""
    return round(math.hypot(a[0] - b[0], a[1] - b[1]), 3)


class Environment(ABC):
    """Implement the three abstract reads; ``observe`` composes them (override it when
    one round trip can answer everything, as GridWorld does)."""

    @abstractmethod
    def agent_position(self, agent_id: str) -> Position | None:
        """(x, y) of the agent, or None if it is not in this world."""

    @abstractmethod
    def tiles_within(self, center: Position, radius: int) -> list[dict[str, Any]]:
        """Tiles of the square of ``radius`` around ``center``, nearest first (ties by
        (x, y)): ``{"x", "y", "distance", "objects": [{"id", "name", "state"}],
        "events": [{"id", "subject", "predicate", "object", "description"}],
        "agents": [agent ids]}``."""

    @abstractmethod
    def agents_near(self, agent_id: str, radius: int) -> list[dict[str, Any]]:
        """Other agents within ``radius``, nearest first:
        ``{"agent_id", "x", "y", "distance", "activity"}``."""

    def current_time(self) -> dict[str, Any]:
        """The world's clock, e.g. ``{"tick": 12, "clock": "08:00"}``."""
        return {"tick": 0, "clock": None}

    def observe(self, agent_id: str, radius: int) -> dict[str, Any]:
        """Everything one agent perceives now: position, tiles, agents, time."""
        position = self.agent_position(agent_id)
        if position is None:
            return {"agent_id": agent_id, "position": None, "radius": radius, "tiles": [],
                    "agents": [], "time": self.current_time()}
        return {"agent_id": agent_id, "position": list(position), "radius": radius,
                "tiles": self.tiles_within(position, radius),
                "agents": self.agents_near(agent_id, radius), "time": self.current_time()}
