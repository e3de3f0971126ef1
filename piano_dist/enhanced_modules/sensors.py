"""Sensors: what each one takes from an observation, and what it makes of it.

``extract_inputs`` cuts an Environment observation into one JSON input per sensor;
``PROCESSORS[sensor](input) -> (processed_data, confidence)`` is pure and deterministic,
so equal inputs give equal outputs in any process: that is what makes the shared
result cache sound. Bump PROCESSOR_VERSION when a processor's output changes, so
cached results of the old code stop matching.
"""
from __future__ import annotations

import re
from enum import Enum
from typing import Any, Callable

PROCESSOR_VERSION = 1


class SensorType(str, Enum):
    VISUAL = "visual"
    AUDITORY = "auditory"
    SPATIAL = "spatial"
    SOCIAL = "social"
    ENVIRONMENTAL = "environmental"
    TEMPORAL = "temporal"


# Attention weights (kept from the original API, docs/compat.md): social cues matter most, the clock least.
SENSOR_WEIGHTS = {
    SensorType.SOCIAL: 1.0, SensorType.VISUAL: 0.8, SensorType.AUDITORY: 0.7,
    SensorType.ENVIRONMENTAL: 0.6, SensorType.SPATIAL: 0.4, SensorType.TEMPORAL: 0.3,
}

# Predicates that make an event an interaction between agents (the original also
# required the literal word "agent" in the subject, which real names never contain).
INTERACTION_PREDICATES = ("chat with", "talk to", "talk with", "interact with", "greet", "meet", "help")
# Predicates and object states that can be heard.
SOUND_PREDICATES = ("say", "says", "chat with", "talk to", "talk with", "shout", "sing", "ring", "play")
SOUND_STATES = ("playing", "brewing", "cooking", "being played", "ringing")


_SOUND_STATE = re.compile("|".join(re.escape(s) for s in SOUND_STATES))


def _is_interaction(event: dict) -> bool:
    return (event.get("predicate") or "").startswith(INTERACTION_PREDICATES)


def _is_sound(event: dict) -> bool:
    # str.startswith with a tuple and one compiled pattern: a perception checks every
    # event in view, dozens per call.
    return ((event.get("predicate") or "").startswith(SOUND_PREDICATES)
            or _SOUND_STATE.search(event.get("object") or "") is not None)


def extract_inputs(observation: dict[str, Any], attention_bandwidth: int) -> dict[SensorType, dict]:
    """One input per sensor with something to sense, in the sensors' order. SOCIAL and
    AUDITORY only when there is someone or something to hear; the rest always."""
    tiles = observation.get("tiles") or []
    events = [{**e, "distance": t["distance"]} for t in tiles for e in t["events"]]
    objects = [{**o, "x": t["x"], "y": t["y"], "distance": t["distance"]}
               for t in tiles for o in t["objects"]]
    agents = observation.get("agents") or []
    interactions = [e for e in events if _is_interaction(e)]
    sounds = [e for e in events if _is_sound(e)]
    inputs: dict[SensorType, dict] = {SensorType.VISUAL: {"objects": objects}}
    if agents or interactions:
        inputs[SensorType.SOCIAL] = {"agents": agents, "interactions": interactions}
    # Generative agents attend to the att_bandwidth nearest events (tiles come nearest first).
    inputs[SensorType.ENVIRONMENTAL] = {"events": events[:attention_bandwidth], "events_total": len(events)}
    inputs[SensorType.TEMPORAL] = {"time": observation.get("time") or {}}
    inputs[SensorType.SPATIAL] = {"position": observation.get("position"), "radius": observation.get("radius"),
                                  "tiles": [[t["x"], t["y"], t["distance"]] for t in tiles]}
    if sounds:
        inputs[SensorType.AUDITORY] = {"sounds": sounds}
    return inputs


def _visual(data: dict) -> tuple[dict, float]:
    objects = data["objects"]
    active = [o["name"] for o in objects if o["state"] not in ("idle", "off")]
    return ({"objects": [{k: o[k] for k in ("name", "state", "x", "y", "distance")} for o in objects],
             "object_count": len(objects), "active_objects": active,
             "nearest_object": objects[0]["name"] if objects else None},
            min(1.0, len(objects) / 3))


def _social(data: dict) -> tuple[dict, float]:
    agents, interactions = data["agents"], data["interactions"]
    close = [a["agent_id"] for a in agents if a["distance"] <= 2]
    return ({"agents": [{k: a[k] for k in ("agent_id", "activity", "distance")} for a in agents],
             "agent_count": len(agents), "agents_within_reach": close,
             "interactions": [i["description"] for i in interactions]},
            min(1.0, (len(agents) + len(interactions)) / 4))


def _environmental(data: dict) -> tuple[dict, float]:
    events = data["events"]
    return ({"events": [{k: e[k] for k in ("subject", "predicate", "object", "description", "distance")}
                        for e in events],
             "event_count": len(events), "events_total": data["events_total"]},
            min(1.0, len(events) / 5))


def _temporal(data: dict) -> tuple[dict, float]:
    time = data["time"]
    clock = time.get("clock")
    hour = int(clock[:2]) if isinstance(clock, str) and clock[:2].isdigit() else None
    part = (None if hour is None else "night" if hour < 6 else "morning" if hour < 12
            else "afternoon" if hour < 18 else "evening")
    return {"tick": time.get("tick"), "clock": clock, "part_of_day": part}, 0.8


def _spatial(data: dict) -> tuple[dict, float]:
    tiles = data["tiles"]
    xs, ys = [t[0] for t in tiles], [t[1] for t in tiles]
    return ({"position": data["position"], "radius": data["radius"], "occupied_tiles": len(tiles),
             "extent": [min(xs), min(ys), max(xs), max(ys)] if tiles else None},
            min(1.0, len(tiles) / 8))


def _auditory(data: dict) -> tuple[dict, float]:
    sounds = data["sounds"]
    return ({"sounds": [{"description": s["description"], "distance": s["distance"]} for s in sounds],
             "loudest": min(sounds, key=lambda s: s["distance"])["description"] if sounds else None},
            min(1.0, len(sounds) / 3))


PROCESSORS: dict[SensorType, Callable[[dict], tuple[dict, float]]] = {
    SensorType.VISUAL: _visual, SensorType.SOCIAL: _social, SensorType.ENVIRONMENTAL: _environmental,
    SensorType.TEMPORAL: _temporal, SensorType.SPATIAL: _spatial, SensorType.AUDITORY: _auditory,
}
