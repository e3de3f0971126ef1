"""GridWorld: a small tile world kept in Redis, shared by every agent and process.

Layout (one world = one hash slot, see Keys.world_key):
  meta     hash  width, height, seed, tick, minutes_per_tick, start_minute, event_seq
  objects  hash  object id -> {"name", "x", "y", "state"}
  agents   hash  agent id  -> {"x", "y", "activity"}
  events   hash  event id  -> {"x", "y", "subject", "predicate", "object", "description"}
  version  int   bumped by every write

Callers make moves and updates while holding the ResourceCoordinator's WRITE lock on
the world's resource ("world"); each write runs world_write.lua, which refuses it if
that lock was meanwhile granted to someone else (fencing). Reads take one MULTI of the
hashes, so a view is never half old, half new. ``GridWorld.create(seed=…)`` lays out the
same world for the same arguments.
"""
from __future__ import annotations

import json
import random
from typing import Any, Iterable

import redis

from ..connection import connection_url, get_connection
from ..keys import Keys
from ..resources.fencing import fence_args, raise_if_fenced
from ..scripts import ScriptSet
from .environment import Environment, Position, distance

RESOURCE_ID = "world"

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
        self._scripts = ScriptSet(self.connection)
        self._size: tuple[int, int] | None = None

    def _key(self, part: str) -> str:
        return self.keys.world_key(self.name, part)

    # --- creation --------------------------------------------------------------------------
    @classmethod
    def create(cls, name: str = "default", width: int = 20, height: int = 20, seed: int = 0,
               n_objects: int = 12, agents: Iterable[str] = (), *, minutes_per_tick: int = 10,
               start_minute: int = 8 * 60, connection: redis.Redis | None = None,
               redis_url: str | None = None, prefix: str | None = None) -> "GridWorld":
        """Lay out a world (replacing one of the same name): objects from the catalogue
        and the given agents on distinct random tiles, drawn from ``seed``."""
        agents = sorted(agents)
        if width < 1 or height < 1 or width * height < n_objects + len(agents):
            raise ValueError("the grid is too small for the objects and agents asked for")
        world = cls(name, connection=connection, redis_url=redis_url, prefix=prefix)
        rng = random.Random(seed)
        cells = rng.sample([(x, y) for x in range(width) for y in range(height)],
                           n_objects + len(agents))
        objects = {}
        for i in range(n_objects):
            obj_name, states = OBJECT_CATALOGUE[i % len(OBJECT_CATALOGUE)]
            if i >= len(OBJECT_CATALOGUE):
                obj_name = f"{obj_name} {i // len(OBJECT_CATALOGUE) + 1}"
            x, y = cells[i]
            objects[f"obj{i}"] = {"name": obj_name, "x": x, "y": y, "state": states[0]}
        placed = {agent: {"x": cells[n_objects + j][0], "y": cells[n_objects + j][1], "activity": "idle"}
                  for j, agent in enumerate(agents)}
        meta = {"width": width, "height": height, "seed": seed, "tick": 0,
                "minutes_per_tick": minutes_per_tick, "start_minute": start_minute, "event_seq": 0}
        with world.connection.pipeline(transaction=True) as pipe:
            pipe.delete(*(world._key(p) for p in ("meta", "objects", "agents", "events")))
            pipe.hset(world._key("meta"), mapping=meta)
            if objects:
                pipe.hset(world._key("objects"), mapping={k: _dumps(v) for k, v in objects.items()})
            if placed:
                pipe.hset(world._key("agents"), mapping={k: _dumps(v) for k, v in placed.items()})
            pipe.incr(world._key("version"))
            pipe.execute()
        return world

    def exists(self) -> bool:
        return bool(self.connection.exists(self._key("meta")))

    def register_with(self, coordinator) -> str:
        """Make the world a lockable resource of ``coordinator`` (once, cluster-wide).

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

    # --- writes (under the WRITE lock on the world resource) ---------------------------------
    def _write(self, part: str, op: str, *fields: Any) -> int:
        fence_key, token = fence_args(self.resource_id)
        try:
            return int(self._scripts.world_write(
                keys=[self._key(part), self._key("version")], args=[fence_key, token, op, *fields]))
        except redis.ResponseError as exc:
            raise_if_fenced(exc)
            raise

    def _check_tile(self, x: int, y: int) -> None:
        width, height = self.size
        if not (isinstance(x, int) and isinstance(y, int) and 0 <= x < width and 0 <= y < height):
            raise ValueError(f"({x!r}, {y!r}) is outside the {width}x{height} world {self.name!r}")

    def place_agent(self, agent_id: str, x: int, y: int, activity: str = "idle") -> int:
        self._check_tile(x, y)
        return self._write("agents", "set", agent_id, _dumps({"x": x, "y": y, "activity": activity}))

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
        return self._write("agents", "del", agent_id)

    def set_object_state(self, object_id: str, state: str) -> int:
        raw = self.connection.hget(self._key("objects"), object_id)
        if raw is None:
            raise KeyError(f"object {object_id!r} is not in world {self.name!r}")
        return self._write("objects", "set", object_id, _dumps({**json.loads(raw), "state": state}))

    def add_event(self, x: int, y: int, subject: str, predicate: str, obj: str,
                  description: str | None = None) -> str:
        """Something happening on a tile (a chat, a sound …); returns its event id."""
        self._check_tile(x, y)
        event_id = f"ev{self.connection.hincrby(self._key('meta'), 'event_seq', 1)}"
        self._write("events", "set", event_id, _dumps({
            "x": x, "y": y, "subject": subject, "predicate": predicate, "object": obj,
            "description": description or f"{subject} {predicate} {obj}"}))
        return event_id

    def step_agent(self, agent_id: str, x: int, y: int, activity: str, predicate: str = "is",
                   obj: str | None = None) -> str:
        """Move an agent and leave an event on its new tile, atomically and in one round
        trip (for callers that hold the world lock: the shorter the hold, the better).
        Returns the event id."""
        self._check_tile(x, y)
        obj = activity if obj is None else obj
        fence_key, token = fence_args(self.resource_id)
        try:
            event_id, _ = self._scripts.world_step(
                keys=[self._key("agents"), self._key("events"), self._key("meta"), self._key("version")],
                args=[fence_key, token, agent_id, _dumps({"x": x, "y": y, "activity": activity}),
                      _dumps({"x": x, "y": y, "subject": agent_id, "predicate": predicate, "object": obj,
                              "description": f"{agent_id} {predicate} {obj}"})])
        except redis.ResponseError as exc:
            raise_if_fenced(exc)
            raise
        return event_id.decode() if isinstance(event_id, bytes) else event_id

    def remove_event(self, event_id: str) -> int:
        return self._write("events", "del", event_id)

    def advance(self, ticks: int = 1) -> int:
        """Move the world clock on; returns the new tick."""
        tick = int(self.connection.hincrby(self._key("meta"), "tick", int(ticks)))
        self.connection.incr(self._key("version"))
        return tick

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

    def snapshot(self) -> dict[str, Any]:
        """The whole world at one instant: meta, objects, agents, events, version."""
        with self.connection.pipeline(transaction=True) as pipe:
            pipe.hgetall(self._key("meta"))
            for part in ("objects", "agents", "events"):
                pipe.hgetall(self._key(part))
            pipe.get(self._key("version"))
            meta, objects, agents, events, version = pipe.execute()
        if not meta:
            raise KeyError(f"world {self.name!r} does not exist; create it with GridWorld.create")

        def decode(rows):
            return {k.decode(): json.loads(v) for k, v in rows.items()}

        return {"meta": {k.decode(): int(v) for k, v in meta.items()}, "objects": decode(objects),
                "agents": decode(agents), "events": decode(events), "version": int(version or 0)}

    def agent_position(self, agent_id: str) -> Position | None:
        agent = self._agent(agent_id)
        return (agent["x"], agent["y"]) if agent else None

    def current_time(self) -> dict[str, Any]:
        return _clock(self.snapshot()["meta"])

    def tiles_within(self, center: Position, radius: int) -> list[dict[str, Any]]:
        return _tiles(self.snapshot(), center, radius, exclude=None)

    def agents_near(self, agent_id: str, radius: int) -> list[dict[str, Any]]:
        snap = self.snapshot()
        me = snap["agents"].get(agent_id)
        return [] if me is None else _agents_near(snap, agent_id, (me["x"], me["y"]), radius)

    def observe(self, agent_id: str, radius: int) -> dict[str, Any]:
        """One consistent read answers everything (the base class would read thrice)."""
        snap = self.snapshot()
        me = snap["agents"].get(agent_id)
        base = {"agent_id": agent_id, "radius": radius, "time": _clock(snap["meta"])}
        if me is None:
            return {**base, "position": None, "tiles": [], "agents": []}
        here = (me["x"], me["y"])
        return {**base, "position": list(here), "activity": me["activity"],
                "tiles": _tiles(snap, here, radius, exclude=agent_id),
                "agents": _agents_near(snap, agent_id, here, radius)}


def _clock(meta: dict[str, int]) -> dict[str, Any]:
    minute = (meta.get("start_minute", 0) + meta.get("tick", 0) * meta.get("minutes_per_tick", 10)) % 1440
    return {"tick": meta.get("tick", 0), "clock": f"{minute // 60:02d}:{minute % 60:02d}"}


def _within(x: int, y: int, center: Position, radius: int) -> bool:
    return abs(x - center[0]) <= radius and abs(y - center[1]) <= radius


def _tiles(snap: dict, center: Position, radius: int, exclude: str | None) -> list[dict[str, Any]]:
    """Non-empty tiles in the square around ``center``: objects, their states and the
    agents on them as events (generative agents' "<subject> is <state>"), plus explicit
    events. Empty tiles are left out: they carry nothing to perceive."""
    tiles: dict[Position, dict[str, Any]] = {}

    def tile(x: int, y: int) -> dict[str, Any]:
        if (x, y) not in tiles:
            tiles[(x, y)] = {"x": x, "y": y, "distance": distance(center, (x, y)),
                             "objects": [], "events": [], "agents": []}
        return tiles[(x, y)]

    for obj_id, obj in sorted(snap["objects"].items()):
        if _within(obj["x"], obj["y"], center, radius):
            t = tile(obj["x"], obj["y"])
            t["objects"].append({"id": obj_id, "name": obj["name"], "state": obj["state"]})
            t["events"].append({"id": obj_id, "subject": obj["name"], "predicate": "is",
                                "object": obj["state"], "description": f"{obj['name']} is {obj['state']}"})
    for agent_id, agent in sorted(snap["agents"].items()):
        if agent_id != exclude and _within(agent["x"], agent["y"], center, radius):
            t = tile(agent["x"], agent["y"])
            t["agents"].append(agent_id)
            t["events"].append({"id": f"agent:{agent_id}", "subject": agent_id, "predicate": "is",
                                "object": agent["activity"],
                                "description": f"{agent_id} is {agent['activity']}"})
    for event_id, ev in sorted(snap["events"].items(), key=lambda kv: int(kv[0][2:]) if kv[0][2:].isdigit() else 0):
        if _within(ev["x"], ev["y"], center, radius):
            tile(ev["x"], ev["y"])["events"].append(
                {"id": event_id, **{k: ev[k] for k in ("subject", "predicate", "object", "description")}})
    return sorted(tiles.values(), key=lambda t: (t["distance"], t["x"], t["y"]))


def _agents_near(snap: dict, agent_id: str, here: Position, radius: int) -> list[dict[str, Any]]:
    near = [{"agent_id": other, "x": a["x"], "y": a["y"], "distance": distance(here, (a["x"], a["y"])),
             "activity": a["activity"]}
            for other, a in snap["agents"].items()
            if other != agent_id and _within(a["x"], a["y"], here, radius)]
    return sorted(near, key=lambda a: (a["distance"], a["agent_id"]))
