"""Episodic memory: events grouped into episodes by coherence, bounded by episode count.

An event joins the most coherent episode active in the last 30 minutes when coherence
reaches ``coherence_threshold``; otherwise it starts an episode. Coherence is the mean of
four scores in 0..1: shared participants, same location, matching episode type, and
closeness in time. An unknown location or an empty participant list scores 0 — never a
match — so unrelated events without that information do not merge into one episode.
(Causal links are added after an event exists, so they cannot help place it.)
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from ..arguments import is_whole
from .store import MemoryStore
from .timeutil import from_epoch, to_epoch
from .validation import (
    sanitize_memory_data, validate_importance, validate_label, validate_labels,
)

JOIN_WINDOW_SECONDS = 30 * 60
CANDIDATE_EPISODES = 5


class CausalRelationType(Enum):
    CAUSES = "causes"
    ENABLES = "enables"
    PREVENTS = "prevents"
    FOLLOWS = "follows"
    SIMILAR_TO = "similar_to"
    CONTRADICTS = "contradicts"


class EpisodeType(Enum):
    CONVERSATION = "conversation"
    ACTIVITY = "activity"
    SOCIAL_EVENT = "social_event"
    DECISION_MAKING = "decision_making"
    EMOTIONAL_SEQUENCE = "emotional_sequence"
    ROUTINE = "routine"


_TYPE_WORDS = [
    (("conversation", "chat", "dialogue", "talk", "speech"), EpisodeType.CONVERSATION),
    (("social", "interaction", "meeting", "party", "date"), EpisodeType.SOCIAL_EVENT),
    (("decision", "plan", "choice", "goal"), EpisodeType.DECISION_MAKING),
    (("emotion", "feeling", "mood", "reflection"), EpisodeType.EMOTIONAL_SEQUENCE),
    (("routine", "habit", "daily", "schedule"), EpisodeType.ROUTINE),
]


def episode_type_for(event_type: str) -> EpisodeType:
    lowered = event_type.lower()
    for words, kind in _TYPE_WORDS:
        if any(w in lowered for w in words):
            return kind
    return EpisodeType.ACTIVITY


@dataclass
class Episode:
    episode_id: str
    episode_type: EpisodeType
    start_time: datetime
    end_time: datetime
    event_ids: list[str] = field(default_factory=list)
    title: str = ""
    summary: str = ""
    importance: float = 0.5
    coherence_score: float = 1.0
    participants: list[str] = field(default_factory=list)
    location: str | None = None
    outcome: str | None = None
    emotional_impact: float = 0.0

    @property
    def duration_minutes(self) -> float:
        return (self.end_time - self.start_time).total_seconds() / 60

    @classmethod
    def _from_stored(cls, data: dict) -> "Episode":
        return cls(
            episode_id=data["episode_id"],
            episode_type=EpisodeType(data["episode_type"]),
            start_time=from_epoch(data["start_time"]),
            end_time=from_epoch(data["end_time"]),
            event_ids=_as_list(data.get("event_ids")),
            title=data.get("title", ""),
            summary=data.get("summary", ""),
            importance=float(data.get("importance", 0.5)),
            coherence_score=float(data.get("coherence_score", 1.0)),
            # Lua's cjson writes an empty list as {}: normalise here
            participants=_as_list(data.get("participants")),
            location=data.get("location"),
            outcome=data.get("outcome"),
            emotional_impact=float(data.get("emotional_impact", 0.0)),
        )


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, list) else []


class EpisodicMemory(MemoryStore):
    kind = "episodic"
    resource_type_name = "episodic_memory"
    parts = ("events", "episodes", "activity", "causal")

    def __init__(self, max_episodes: int = 100, coherence_threshold: float = 0.6,
                 max_events_per_episode: int = 50, **where):
        for label, value in (("max_episodes", max_episodes), ("max_events_per_episode", max_events_per_episode)):
            if not is_whole(value) or value < 1:
                raise ValueError(f"{label} must be a positive int, not {value!r}")
        self.max_episodes = max_episodes
        self.coherence_threshold = validate_importance(coherence_threshold, "coherence_threshold")
        self.max_events_per_episode = max_events_per_episode
        super().__init__(**where)

    def _config(self) -> dict:
        return {"max_episodes": self.max_episodes, "coherence_threshold": self.coherence_threshold,
                "max_events_per_episode": self.max_events_per_episode}

    # --- writes ------------------------------------------------------------------------
    def add_event(self, content: str, event_type: str = "event", importance: float = 0.5,
                  participants: list[str] | None = None, location: str | None = None,
                  emotional_valence: float = 0.0, metadata: dict | None = None,
                  timestamp: datetime | float | None = None) -> str:
        """Store an event, placing it in an episode; returns its id ("event_N")."""
        content, event_type, importance, metadata = sanitize_memory_data(
            content, event_type, importance, metadata)
        participants = validate_labels(participants, "participants")
        location = validate_label(location, "location", allow_none=True)
        emotional_valence = validate_importance(emotional_valence, "emotional_valence", low=-1.0, high=1.0)
        ts = to_epoch(timestamp)
        kind = episode_type_for(event_type)

        candidate, coherence = self._best_candidate(ts, kind, participants, location)
        event_body = {"content": content, "event_type": event_type, "timestamp": ts,
                      "importance": importance, "participants": participants, "location": location,
                      "emotional_valence": emotional_valence, "metadata": metadata}
        episode_body = {"episode_type": kind.value, "title": f"{kind.value}: {content[:60]}",
                        "summary": content[:200], "importance": importance, "coherence_score": 1.0,
                        "participants": participants, "location": location, "outcome": None,
                        "emotional_impact": emotional_valence}
        event_id, _episode_id, _joined, _evicted = self._write(
            "memory_episodic_add",
            [self._key("events"), self._key("episodes"), self._key("activity"), self._key("seq"),
             self._key("causal")],
            [self._dumps(event_body), repr(ts), candidate or "", self._dumps(episode_body),
             self._dumps(participants), repr(importance), repr(emotional_valence), repr(coherence),
             self.max_episodes, self.max_events_per_episode, location or ""],
        )
        return event_id.decode()

    def _best_candidate(self, ts: float, kind: EpisodeType, participants: list[str],
                        location: str | None) -> tuple[str | None, float]:
        ids = [i.decode() for i in self.connection.zrevrangebyscore(
            self._key("activity"), "+inf", ts - JOIN_WINDOW_SECONDS, start=0, num=CANDIDATE_EPISODES)]
        best, best_score = None, 0.0
        for episode in self._episodes(ids):
            score = self.coherence(episode, ts, kind, participants, location)
            if score >= self.coherence_threshold and score > best_score:
                best, best_score = episode.episode_id, score
        return best, best_score

    @staticmethod
    def coherence(episode: Episode, ts: float, kind: EpisodeType, participants: list[str],
                  location: str | None) -> float:
        start, end = episode.start_time.timestamp(), episode.end_time.timestamp()
        gap = max(0.0, ts - end, start - ts)
        if gap > JOIN_WINDOW_SECONDS:
            return 0.0
        people = set(participants) | set(episode.participants)
        shared = len(set(participants) & set(episode.participants)) / len(people) if people else 0.0
        same_place = 1.0 if location is not None and location == episode.location else 0.0
        same_kind = 1.0 if kind == episode.episode_type else 0.0
        closeness = 1.0 - gap / JOIN_WINDOW_SECONDS
        return (shared + same_place + same_kind + closeness) / 4

    def add_causal_relation(self, source_event_id: str, target_event_id: str,
                            relation_type: CausalRelationType | str, strength: float = 0.8,
                            confidence: float = 0.8, evidence: list[str] | None = None) -> int:
        """Link two stored events; returns how many relations the source now has."""
        relation_type = CausalRelationType(relation_type.value if isinstance(relation_type, CausalRelationType)
                                           else relation_type)
        relation = {"target": validate_label(target_event_id, "target_event_id"),
                    "relation_type": relation_type.value,
                    "strength": validate_importance(strength, "strength"),
                    "confidence": validate_importance(confidence, "confidence"),
                    "evidence": validate_labels(evidence, "evidence")}
        import redis
        try:
            return int(self._write(
                "memory_episodic_causal", [self._key("events"), self._key("causal")],
                [validate_label(source_event_id, "source_event_id"), target_event_id, self._dumps(relation)]))
        except redis.ResponseError as exc:
            if str(exc).startswith("UNKNOWN_EVENT"):
                raise KeyError(f"no stored event {str(exc).split()[-1]!r}") from None
            raise

    # --- reads -------------------------------------------------------------------------
    def _episodes(self, ids: list[str]) -> list[Episode]:
        if not ids:
            return []
        raw = self.connection.hmget(self._key("episodes"), ids)
        return [Episode._from_stored(self._loads(r)) for r in raw if r is not None]

    def get_episode(self, episode_id: str) -> Episode | None:
        found = self._episodes([episode_id])
        return found[0] if found else None

    def get_recent_episodes(self, hours_back: float = 1, limit: int | None = None,
                            current_time: datetime | float | None = None) -> list[Episode]:
        """Episodes active in the last ``hours_back`` hours, most recently active first."""
        now = to_epoch(current_time, "current_time")
        ids = [i.decode() for i in self.connection.zrevrangebyscore(
            self._key("activity"), "+inf", now - float(hours_back) * 3600,
            start=0 if limit is not None else None, num=limit)]
        return self._episodes(ids)

    def all_episodes(self) -> list[Episode]:
        """Every stored episode, most recently active first."""
        return self._episodes([i.decode() for i in self.connection.zrevrange(self._key("activity"), 0, -1)])

    def get_episodes_by_participant(self, participant: str) -> list[Episode]:
        return [e for e in self.all_episodes() if participant in e.participants]

    def get_episodes_by_type(self, episode_type: EpisodeType | str) -> list[Episode]:
        kind = episode_type if isinstance(episode_type, EpisodeType) else EpisodeType(episode_type)
        return [e for e in self.all_episodes() if e.episode_type == kind]

    def get_event(self, event_id: str) -> dict | None:
        raw = self.connection.hget(self._key("events"), event_id)
        return self._public_event(self._loads(raw)) if raw is not None else None

    def get_episode_events(self, episode_id: str) -> list[dict]:
        episode = self.get_episode(episode_id)
        if episode is None or not episode.event_ids:
            return []
        raw = self.connection.hmget(self._key("events"), episode.event_ids)
        events = [self._public_event(self._loads(r)) for r in raw if r is not None]
        return sorted(events, key=lambda e: e["timestamp"])

    def get_causal_relations(self, event_id: str) -> list[dict]:
        """Relations from this event whose target is still stored."""
        relations = self._loads(self.connection.hget(self._key("causal"), event_id))
        if not relations:
            return []
        relations = [dict(r, evidence=_as_list(r.get("evidence"))) for r in relations]
        present = self.connection.hmget(self._key("events"), [r["target"] for r in relations])
        return [r for r, p in zip(relations, present) if p is not None]

    def get_episode_narrative(self, episode_id: str) -> str:
        episode = self.get_episode(episode_id)
        if episode is None:
            raise KeyError(f"no stored episode {episode_id!r}")
        lines = [f"{episode.title} ({episode.start_time:%Y-%m-%d %H:%M}"
                 f" - {episode.end_time:%H:%M})"]
        if episode.participants:
            lines.append("With: " + ", ".join(episode.participants))
        if episode.location:
            lines.append(f"At: {episode.location}")
        for event in self.get_episode_events(episode_id):
            lines.append(f"- {event['timestamp']:%H:%M} {event['content']}")
        return "\n".join(lines)

    def event_count(self) -> int:
        return int(self.connection.hlen(self._key("events")))

    def __len__(self) -> int:
        return int(self.connection.zcard(self._key("activity")))

    def get_memory_summary(self) -> dict[str, Any]:
        episodes = self.all_episodes()
        return {
            "total_episodes": len(episodes),
            "total_events": self.event_count(),
            "episode_types": dict(Counter(e.episode_type.value for e in episodes)),
            "avg_coherence": sum(e.coherence_score for e in episodes) / len(episodes) if episodes else 0.0,
            "capacity_utilization": len(episodes) / self.max_episodes,
        }

    @staticmethod
    def _public_event(event: dict) -> dict:
        out = dict(event)
        out["timestamp"] = from_epoch(event["timestamp"])
        out["participants"] = _as_list(event.get("participants"))
        return out
