"""GridWorld: a tile world kept in Redis, shared by every agent and process.

Space is the unit of contention: the grid is cut into square cells (``cell`` tiles a
side, 8 by default), and every read or write touches only the cells it concerns.

Layout (one world = one hash slot, see Keys.world_base; details in lua/world_apply.lua):
  meta     hash  width, height, cell, events_per_cell, seed, tick, minutes_per_tick,
                 start_minute, event_seq
  agents   hash  agent id  -> {"x", "y", "activity", "tick"}
  objects  hash  object id -> {"name", "x", "y", "state"}
  occ      hash  "x,y" -> agent id (at most one agent per tile)
  cell:<cx>:<cy>    hash  the cell's agents ("a:<id>") and objects ("o:<id>")
  cellev:<cx>:<cy>  list  the cell's newest events, capped at events_per_cell
  version  int   bumped by every write

Consistency rules (docs/world.md):
- Every write is one script (lua/world_apply.lua): a record and its cell change
  together. A move claims its target tile atomically; a move onto a tile another agent
  holds is blocked, so two agents never share a tile. No lock is needed for that.
- ``step`` (an agent's action) carries the agent's tick: replaying a tick (a task run
  again after its worker died) changes nothing and answers as the first run did.
- Reads (``observe``, ``tiles_within``, ``agents_near``) are one script over the cells
  in view: a view is never half old, half new, and costs the same in a world of ten
  agents or ten thousand. ``snapshot()`` reads the whole world (tests, tools).
- Writers that hold the ResourceCoordinator's WRITE lock on the world's resource
  ("world") have their writes fenced: a holder whose lease lapsed is refused.
"""
from __future__ import annotations

import json
import random
from typing import Any, Iterable

import redis

from ..arguments import is_whole
from ..connection import connection_url, get_connection
from ..keys import Keys
from ..replies import as_text
from ..resources.fencing import fence_args, raise_if_fenced
from ..scripts import ScriptSet
from .environment import Environment, Position, distance

RESOURCE_ID = "world"
DEFAULT_CELL = 8
DEFAULT_EVENTS_PER_CELL = 16

# (name, states): the generated world's furniture; the first state is the initial one.
OBJECT_CATALOGUE = (
    ("bed", ("idle", "being slept in")), ("stove", ("idle", "cooking")),
    ("coffee machine", ("idle", "brewing coffee")), ("desk", ("idle", "in use")),
    ("piano", ("idle", "being played")), ("bookshelf", ("idle", "being browsed")),
    ("garden", ("idle", "being watered")), ("easel", ("idle", "holding a painting")),
    ("counter", ("idle", "serving customers")), ("bench", ("idle", "occupied")),
    ("fountain", ("flowing", "dry")), ("radio", ("off", "playing music")),
)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class TileOccupied(ValueError):
    """Another agent stands on the tile (one agent per tile)."""


class GridWorld(Environment):
    def __init__(self, name: str = "default", *, connection: redis.Redis | None = None,
                 redis_url: str | None = None, prefix: str | None = None,
                 resource_id: str = RESOURCE_ID):
        if not isinstance(name, str) or not name or any(c in name for c in "{}: "):
            raise ValueError(f"world name must be a non-empty string without braces, ':' or spaces: {name!r}")
        self.name = name
        self.resource_id = resource_id
        self.connection = get_connection(redis_url, connection)
        self.keys = Keys(prefix)
        self.base = self.keys.world_base(name)
        self._scripts = ScriptSet(self.connection)
        self._size: tuple[int, int] | None = None

    def _key(self, part: str) -> str:
        return self.keys.world_key(self.name, part)

    # --- creation --------------------------------------------------------------------------
    @classmethod
    def create(cls, name: str = "default", width: int = 20, height: int = 20, seed: int = 0,
               n_objects: int = 12, agents: Iterable[str] = (), *, minutes_per_tick: int = 10,
               start_minute: int = 8 * 60, cell: int = DEFAULT_CELL,
               events_per_cell: int = DEFAULT_EVENTS_PER_CELL, connection: redis.Redis | None = None,
               redis_url: str | None = None, prefix: str | None = None) -> "GridWorld":
        """Lay out a world (replacing one of the same name): objects from the catalogue
        and the given agents on distinct random tiles, drawn from ``seed``."""
        agents = sorted(agents)
        for label, value, low in (("width", width, 1), ("height", height, 1), ("cell", cell, 1),
                                  ("events_per_cell", events_per_cell, 1), ("n_objects", n_objects, 0)):
            if not is_whole(value) or value < low:
                raise ValueError(f"{label} must be an integer ≥ {low}, not {value!r}")
        if width * height < n_objects + len(agents):
            raise ValueError("the grid is too small for the objects and agents asked for")
        world = cls(name, connection=connection, redis_url=redis_url, prefix=prefix)
        rng = random.Random(seed)
        cells = rng.sample([(x, y) for x in range(width) for y in range(height)], n_objects + len(agents))
        objects = {}
        for i in range(n_objects):
            obj_name, states = OBJECT_CATALOGUE[i % len(OBJECT_CATALOGUE)]
            if i >= len(OBJECT_CATALOGUE):
                obj_name = f"{obj_name} {i // len(OBJECT_CATALOGUE) + 1}"
            x, y = cells[i]
            objects[f"obj{i}"] = {"name": obj_name, "x": x, "y": y, "state": states[0]}
        placed = {agent: {"x": cells[n_objects + j][0], "y": cells[n_objects + j][1], "activity": "idle",
                          "tick": -1}
                  for j, agent in enumerate(agents)}
        meta = {"width": width, "height": height, "cell": cell, "events_per_cell": events_per_cell,
                "seed": seed, "tick": 0, "minutes_per_tick": minutes_per_tick, "start_minute": start_minute,
                "event_seq": 0}
        by_cell: dict[str, dict[str, str]] = {}
        for prefix_char, records in (("o", objects), ("a", placed)):
            for item_id, record in records.items():
                cell_id = f"{record['x'] // cell}:{record['y'] // cell}"
                by_cell.setdefault(cell_id, {})[f"{prefix_char}:{item_id}"] = _dumps(record)
        world.destroy()
        with world.connection.pipeline(transaction=True) as pipe:
            pipe.hset(world._key("meta"), mapping=meta)
            if objects:
                pipe.hset(world._key("objects"), mapping={k: _dumps(v) for k, v in objects.items()})
            if placed:
                pipe.hset(world._key("agents"), mapping={k: _dumps(v) for k, v in placed.items()})
                pipe.hset(world._key("occ"), mapping={f"{v['x']},{v['y']}": k for k, v in placed.items()})
            for cell_id, fields in by_cell.items():
                pipe.hset(world._key(f"cell:{cell_id}"), mapping=fields)
            pipe.incr(world._key("version"))
            pipe.execute()
        return world

    def destroy(self) -> int:
        """Delete every key of this world (its cells are known from its size); returns
        how many keys were deleted."""
        width, height, cell = self.connection.hmget(self._key("meta"), "width", "height", "cell")
        parts = ["meta", "objects", "agents", "occ", "version", "events"]
        if width is not None:
            cell = int(cell or DEFAULT_CELL)
            for gx in range((int(width) - 1) // cell + 1):
                for gy in range((int(height) - 1) // cell + 1):
                    parts += (f"cell:{gx}:{gy}", f"cellev:{gx}:{gy}")
        deleted = 0
        for start in range(0, len(parts), 500):
            deleted += self.connection.delete(*(self._key(p) for p in parts[start:start + 500]))
        self._size = None
        return deleted

    def exists(self) -> bool:
        return bool(self.connection.exists(self._key("meta")))

    def register_with(self, coordinator) -> str:
        """Make the world a lockable resource of ``coordinator`` (once, cluster-wide), for
        callers that want to serialise a group of writes; moves and steps need no lock.

        ResourceType has no WORLD member; COMPUTATION is the closest shared, non-memory kind.
        """
        from ..resources import ResourceType

        try:
            coordinator.register_resource(self.resource_id, self, ResourceType.COMPUTATION)
        except ValueError:  # registered by another process: just attach our object
            coordinator.attach_resource(self.resource_id, self)
        return self.resource_id

    def spec(self) -> dict[str, Any]:
        """JSON-safe description from which another process reattaches to this world."""
        return {"world": self.name, "redis_url": connection_url(self.connection),
                "prefix": self.keys.prefix, "resource_id": self.resource_id}

    # --- writes ----------------------------------------------------------------------------
    def _apply(self, op: str, *args: Any) -> list:
        fence_key, token = fence_args(self.resource_id)
        try:
            return self._scripts.world_apply(keys=[self.base], args=[fence_key, token, op, *args])
        except redis.ResponseError as exc:
            raise_if_fenced(exc, f"write to world {self.name!r}", self.resource_id)
            message = str(exc)
            if message.startswith("OCCUPIED"):
                raise TileOccupied(f"tile {message.split()[1]} of world {self.name!r} is taken by "
                                   f"{message.split()[2]}") from None
            if message.startswith("OUTSIDE"):
                raise ValueError(f"({message.split()[1]}) is outside the world {self.name!r}") from None
            if message.startswith("UNKNOWN_AGENT"):
                raise KeyError(f"agent {message.split()[1]!r} is not in world {self.name!r}") from None
            if message.startswith("NO_WORLD"):
                raise KeyError(f"world {self.name!r} does not exist; create it with GridWorld.create") from None
            raise

    def _check_tile(self, x: int, y: int) -> None:
        width, height = self.size
        if not (is_whole(x) and is_whole(y) and 0 <= x < width and 0 <= y < height):
            raise ValueError(f"({x!r}, {y!r}) is outside the {width}x{height} world {self.name!r}")

    @staticmethod
    def _check_text(value: Any, what: str) -> str:
        if not isinstance(value, str) or not value or len(value) > 500:
            raise ValueError(f"{what} must be a non-empty string of at most 500 characters, not {value!r}")
        return value

    def place_agent(self, agent_id: str, x: int, y: int, activity: str = "idle") -> int:
        """Put an agent on a free tile (raises TileOccupied if another agent is there)."""
        self._check_tile(x, y)
        return int(self._apply("place", self._check_text(agent_id, "agent id"), x, y,
                               self._check_text(activity, "activity"))[2])

    def move_agent(self, agent_id: str, x: int, y: int, activity: str | None = None) -> int:
        """Move an agent to (x, y), keeping its activity unless a new one is given."""
        current = self._agent(agent_id)
        if current is None:
            raise KeyError(f"agent {agent_id!r} is not in world {self.name!r}")
        return self.place_agent(agent_id, x, y, current["activity"] if activity is None else activity)

    def set_activity(self, agent_id: str, activity: str) -> int:
        current = self._agent(agent_id)
        if current is None:
            raise KeyError(f"agent {agent_id!r} is not in world {self.name!r}")
        return self.place_agent(agent_id, current["x"], current["y"], activity)

    def remove_agent(self, agent_id: str) -> int:
        return int(self._apply("remove", agent_id)[1])

    def set_object_state(self, object_id: str, state: str) -> int:
        raw = self.connection.hget(self._key("objects"), object_id)
        if raw is None:
            raise KeyError(f"object {object_id!r} is not in world {self.name!r}")
        record = {**json.loads(raw), "state": self._check_text(state, "state")}
        return int(self._apply("object", object_id, _dumps(record))[0])

    def add_event(self, x: int, y: int, subject: str, predicate: str, obj: str,
                  description: str | None = None) -> str:
        """Something happening on a tile (a chat, a sound …); returns its event id. A
        cell keeps its newest ``events_per_cell`` events."""
        self._check_tile(x, y)
        event = {"subject": subject, "predicate": predicate, "object": obj,
                 "description": description or f"{subject} {predicate} {obj}"}
        for key, value in event.items():
            self._check_text(value, key)
        return as_text(self._apply("event", x, y, _dumps(event))[0])

    def step(self, agent_id: str, dx: int, dy: int, activity: str, tick: int, predicate: str = "is",
             obj: str | None = None) -> dict[str, Any]:
        """An agent's action: move by (dx, dy) (clamped to the grid; blocked by an agent on
        the target tile) and leave an event on the tile it ends on, in one atomic write.
        Idempotent per tick. Returns {"x", "y", "event_id", "outcome", "version"}, outcome
        "moved", "blocked" or "replayed"."""
        for label, value in (("dx", dx), ("dy", dy), ("tick", tick)):
            if not is_whole(value):
                raise ValueError(f"{label} must be an integer, not {value!r}")
        self._check_text(activity, "activity")
        x, y, event_id, outcome, version = self._apply(
            "step", self._check_text(agent_id, "agent id"), dx, dy, activity, tick,
            self._check_text(predicate, "predicate"), "" if obj is None else self._check_text(obj, "object"))
        return {"x": int(x), "y": int(y), "event_id": as_text(event_id) or None, "outcome": as_text(outcome),
                "version": int(version)}

    def advance(self, ticks: int = 1) -> int:
        """Move the world clock on; returns the new tick."""
        with self.connection.pipeline(transaction=True) as pipe:
            pipe.hincrby(self._key("meta"), "tick", int(ticks))
            pipe.incr(self._key("version"))
            tick, _ = pipe.execute()
        return int(tick)

    # --- reads ----------------------------------------------------------------------------
    @property
    def size(self) -> tuple[int, int]:
        # A world's size is fixed when it is created, so one read per instance is enough
        # (GridWorld.create returns a new instance).
        if self._size is None:
            width, height = self.connection.hmget(self._key("meta"), "width", "height")
            if width is None:
                raise KeyError(f"world {self.name!r} does not exist; create it with GridWorld.create")
            self._size = int(width), int(height)
        return self._size

    @property
    def version(self) -> int:
        return int(self.connection.get(self._key("version")) or 0)

    def _agent(self, agent_id: str) -> dict | None:
        raw = self.connection.hget(self._key("agents"), agent_id)
        return json.loads(raw) if raw is not None else None

    def agent_position(self, agent_id: str) -> Position | None:
        agent = self._agent(agent_id)
        return (agent["x"], agent["y"]) if agent else None

    def _view(self, agent_id: str | None, radius: int, center: Position | None = None) -> "_View":
        if not is_whole(radius) or radius < 0:
            raise ValueError(f"radius must be a non-negative integer, not {radius!r}")
        cx, cy = center if center is not None else (0, 0)
        try:
            meta, me, cells = self._scripts.world_observe(keys=[self.base],
                                                          args=[agent_id or "", radius, cx, cy])
        except redis.ResponseError as exc:
            if str(exc).startswith("NO_WORLD"):
                raise KeyError(f"world {self.name!r} does not exist; create it with GridWorld.create") from None
            raise
        return _View(meta, me, cells)

    def current_time(self) -> dict[str, Any]:
        meta = self.connection.hmget(self._key("meta"), "tick", "minutes_per_tick", "start_minute")
        if meta[0] is None:
            raise KeyError(f"world {self.name!r} does not exist; create it with GridWorld.create")
        return _clock(int(meta[0]), int(meta[1] or 10), int(meta[2] or 0))

    def tiles_within(self, center: Position, radius: int) -> list[dict[str, Any]]:
        return self._view(None, radius, center).tiles(tuple(center), radius, exclude=None)

    def agents_near(self, agent_id: str, radius: int) -> list[dict[str, Any]]:
        view = self._view(agent_id, radius)
        return [] if view.me is None else view.agents_near(agent_id, radius)

    def observe(self, agent_id: str, radius: int) -> dict[str, Any]:
        """Everything one agent perceives now, from one read of the cells in view."""
        view = self._view(agent_id, radius)
        base = {"agent_id": agent_id, "radius": radius, "time": view.clock}
        if view.me is None:
            return {**base, "position": None, "tiles": [], "agents": []}
        here = (view.me["x"], view.me["y"])
        return {**base, "position": list(here), "activity": view.me["activity"],
                "tiles": view.tiles(here, radius, exclude=agent_id),
                "agents": view.agents_near(agent_id, radius)}

    def snapshot(self) -> dict[str, Any]:
        """The whole world at one instant: meta, objects, agents, events, version.
        Reads every cell (O(world)): for tests and tools, not for agents' ticks."""
        width, height = self.size
        meta = self.connection.hmget(self._key("meta"), "cell")
        cell = int(meta[0] or DEFAULT_CELL)
        with self.connection.pipeline(transaction=True) as pipe:
            pipe.hgetall(self._key("meta"))
            pipe.hgetall(self._key("objects"))
            pipe.hgetall(self._key("agents"))
            for gx in range(0, (width - 1) // cell + 1):
                for gy in range(0, (height - 1) // cell + 1):
                    pipe.lrange(self._key(f"cellev:{gx}:{gy}"), 0, -1)
            pipe.get(self._key("version"))
            rows = pipe.execute()
        meta_raw, objects, agents, event_lists, version = rows[0], rows[1], rows[2], rows[3:-1], rows[-1]
        if not meta_raw:
            raise KeyError(f"world {self.name!r} does not exist; create it with GridWorld.create")
        events = {}
        for raw_list in event_lists:
            for raw in raw_list:
                event = json.loads(raw)
                events[event.pop("id")] = event
        return {"meta": {k.decode(): int(v) for k, v in meta_raw.items()},
                "objects": {k.decode(): json.loads(v) for k, v in objects.items()},
                "agents": {k.decode(): {f: v for f, v in json.loads(raw).items() if f != "event"}
                           for k, raw in agents.items()},
                "events": dict(sorted(events.items(), key=lambda kv: _event_number(kv[0]))),
                "version": int(version or 0)}


class _View:
    """What world_observe.lua returned: the clock, the observer, and the cells in view."""

    def __init__(self, meta: list, me: Any, cells: list):
        tick, per_tick, start = (int(v) if v is not None else None for v in meta[3:6])
        self.clock = _clock(tick or 0, per_tick or 10, start or 0)
        self.me = json.loads(me) if me else None
        self.agents: dict[str, dict] = {}
        self.objects: dict[str, dict] = {}
        self.events: list[dict] = []
        for flat, events in cells:
            for i in range(0, len(flat), 2):
                field, record = as_text(flat[i]), json.loads(flat[i + 1])
                (self.agents if field[0] == "a" else self.objects)[field[2:]] = record
            self.events += [json.loads(raw) for raw in events]
        self.events.sort(key=lambda e: _event_number(e["id"]))

    def tiles(self, center: Position, radius: int, exclude: str | None) -> list[dict[str, Any]]:
        """Non-empty tiles in the square around ``center``: objects, their states and the
        agents on them as events (generative agents' "<subject> is <state>"), plus explicit
        events, oldest first. Empty tiles are left out: they carry nothing to perceive."""
        tiles: dict[Position, dict[str, Any]] = {}

        def tile(x: int, y: int) -> dict[str, Any]:
            if (x, y) not in tiles:
                tiles[(x, y)] = {"x": x, "y": y, "distance": distance(center, (x, y)),
                                 "objects": [], "events": [], "agents": []}
            return tiles[(x, y)]

        for obj_id, obj in sorted(self.objects.items()):
            if _within(obj["x"], obj["y"], center, radius):
                t = tile(obj["x"], obj["y"])
                t["objects"].append({"id": obj_id, "name": obj["name"], "state": obj["state"]})
                t["events"].append({"id": obj_id, "subject": obj["name"], "predicate": "is",
                                    "object": obj["state"], "description": f"{obj['name']} is {obj['state']}"})
        for agent_id, agent in sorted(self.agents.items()):
            if agent_id != exclude and _within(agent["x"], agent["y"], center, radius):
                t = tile(agent["x"], agent["y"])
                t["agents"].append(agent_id)
                t["events"].append({"id": f"agent:{agent_id}", "subject": agent_id, "predicate": "is",
                                    "object": agent["activity"],
                                    "description": f"{agent_id} is {agent['activity']}"})
        for ev in self.events:
            if _within(ev["x"], ev["y"], center, radius):
                tile(ev["x"], ev["y"])["events"].append(
                    {"id": ev["id"], **{k: ev[k] for k in ("subject", "predicate", "object", "description")}})
        return sorted(tiles.values(), key=lambda t: (t["distance"], t["x"], t["y"]))

    def agents_near(self, agent_id: str, radius: int) -> list[dict[str, Any]]:
        here = (self.me["x"], self.me["y"])
        near = [{"agent_id": other, "x": a["x"], "y": a["y"], "distance": distance(here, (a["x"], a["y"])),
                 "activity": a["activity"]}
                for other, a in self.agents.items()
                if other != agent_id and _within(a["x"], a["y"], here, radius)]
        return sorted(near, key=lambda a: (a["distance"], a["agent_id"]))


def _clock(tick: int, minutes_per_tick: int, start_minute: int) -> dict[str, Any]:
    minute = (start_minute + tick * minutes_per_tick) % 1440
    return {"tick": tick, "clock": f"{minute // 60:02d}:{minute % 60:02d}"}


def _within(x: int, y: int, center: Position, radius: int) -> bool:
    return abs(x - center[0]) <= radius and abs(y - center[1]) <= radius


def _event_number(event_id: str) -> int:
    return int(event_id[2:]) if event_id[2:].isdigit() else 0
