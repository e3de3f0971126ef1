"""Semantic memory: concepts and typed relations, with spreading activation.

Activation decays continuously (``activation_decay`` per hour, exponentially) and is
computed when read, so no process has to run a periodic decay job. When more than
``max_concepts`` are stored the least activated concept goes, with its relations.
"""
from __future__ import annotations

import math
import time
from collections import Counter
from enum import Enum
from typing import Any, Iterable

import redis

from ..arguments import is_whole
from . import scoring
from .store import MemoryStore
from .validation import (
    validate_content, validate_embedding, validate_importance, validate_label, validate_labels,
    validate_metadata,
)


class ConceptType(Enum):
    PERSON = "person"
    PLACE = "place"
    ACTION = "action"
    EMOTION = "emotion"
    TRAIT = "trait"
    GOAL = "goal"
    BELIEF = "belief"
    RELATIONSHIP = "relationship"
    ACTIVITY = "activity"
    OBJECT = "object"


class SemanticRelationType(Enum):
    IS_A = "is_a"
    HAS_A = "has_a"
    RELATED_TO = "related_to"
    CAUSES = "causes"
    ENABLES = "enables"
    SIMILAR_TO = "similar_to"
    OPPOSITE_OF = "opposite_of"
    LOCATED_AT = "located_at"
    USED_FOR = "used_for"
    KNOWS = "knows"


def _enum(cls, value):
    return value if isinstance(value, cls) else cls(value)


def _hours(now: float | None = None) -> float:
    return (time.time() if now is None else now) / 3600


class SemanticMemory(MemoryStore):
    kind = "semantic"
    resource_type_name = "semantic_memory"
    parts = ("concepts", "names", "activation", "relations", "rel_index")
    dynamic_parts = ("adj",)

    def __init__(self, max_concepts: int = 1000, activation_decay: float = 0.1,
                 spreading_factor: float = 0.8, similarity_threshold: float = 0.7, **where):
        if not is_whole(max_concepts) or max_concepts < 1:
            raise ValueError(f"max_concepts must be a positive int, not {max_concepts!r}")
        self.max_concepts = max_concepts
        self.activation_decay = validate_importance(activation_decay, "activation_decay", high=100.0)
        self.spreading_factor = validate_importance(spreading_factor, "spreading_factor")
        self.similarity_threshold = validate_importance(similarity_threshold, "similarity_threshold")
        super().__init__(**where)

    def _config(self) -> dict:
        return {"max_concepts": self.max_concepts, "activation_decay": self.activation_decay,
                "spreading_factor": self.spreading_factor,
                "similarity_threshold": self.similarity_threshold}

    # --- writes ------------------------------------------------------------------------
    def add_concept(self, name: str, concept_type: ConceptType | str, description: str = "",
                    importance: float = 0.5, attributes: dict | None = None,
                    embedding: list[float] | None = None) -> str:
        """Store a concept, or update the one with the same (case-insensitive) name.

        A new concept starts as active as it is important (it was just encountered);
        an update keeps its id and relations and the larger of the two activations.
        """
        name = validate_label(name, "name")
        body = {"name": name, "name_key": name.lower(),
                "concept_type": _enum(ConceptType, concept_type).value,
                "description": validate_content(description, "description"),
                "importance": validate_importance(importance),
                "attributes": validate_metadata(attributes, "attributes"),
                "embedding": validate_embedding(embedding), "created_at": time.time()}
        concept_id, _created, _evicted = self._write(
            "memory_semantic_concept",
            [self._key("concepts"), self._key("names"), self._key("activation"), self._key("seq"),
             self._key("relations"), self._key("rel_index")],
            [self.key_base, name.lower(), self._dumps(body), repr(body["importance"]),
             repr(_hours()), repr(self.activation_decay), self.max_concepts],
        )
        return concept_id.decode()

    def add_relation(self, source: str, target: str, relation_type: SemanticRelationType | str,
                     strength: float = 0.8, confidence: float = 0.8, evidence: list[str] | None = None,
                     context: dict | None = None) -> str:
        """Relate two concepts given by id or name; ValueError when either is unknown."""
        relation_type = _enum(SemanticRelationType, relation_type).value
        body = {"relation_type": relation_type, "strength": validate_importance(strength, "strength"),
                "confidence": validate_importance(confidence, "confidence"),
                "evidence": validate_labels(evidence, "evidence"),
                "context": validate_metadata(context, "context"), "created_at": time.time()}
        refs = [validate_label(source, "source"), validate_label(target, "target")]
        refs = [r if r.startswith("concept_") else r.lower() for r in refs]
        try:
            rid, _src, _tgt = self._write(
                "memory_semantic_relation",
                [self._key("concepts"), self._key("names"), self._key("relations"),
                 self._key("rel_index"), self._key("seq")],
                [self.key_base, refs[0], refs[1], relation_type, self._dumps(body)],
            )
        except redis.ResponseError as exc:
            if str(exc).startswith("UNKNOWN_CONCEPT"):
                raise ValueError(f"no concept named or numbered {str(exc).split(' ', 1)[1]!r}") from None
            raise
        return rid.decode()

    def activate_concept(self, concept: str, activation_boost: float = 1.0) -> dict[str, float]:
        """Activate a concept and spread to its neighbours (2 levels, × spreading_factor
        × relation strength per hop). Returns the boosts applied, by concept id."""
        boost = validate_importance(activation_boost, "activation_boost", high=10.0)
        start = self._resolve(concept)
        if start is None:
            raise ValueError(f"no concept named or numbered {concept!r}")
        boosts = {start: boost}
        frontier = {start: boost}
        for _level in range(2):
            following: dict[str, float] = {}
            for cid, amount in frontier.items():
                for rel in self._relations_of(cid):
                    other = rel["target_id"] if rel["source_id"] == cid else rel["source_id"]
                    spread = amount * self.spreading_factor * rel["strength"]
                    if other not in boosts and spread > following.get(other, 0.0):
                        following[other] = spread
            boosts.update(following)
            frontier = following
        args: list[Any] = []
        for cid, amount in boosts.items():
            args += [cid, repr(amount)]
        self._write("memory_semantic_activate", [self._key("concepts"), self._key("activation")],
                    [repr(_hours()), repr(self.activation_decay), *args])
        return boosts

    # --- reads -------------------------------------------------------------------------
    def _resolve(self, ref: str) -> str | None:
        if self.connection.hexists(self._key("concepts"), ref):
            return ref
        found = self.connection.hget(self._key("names"), ref.lower())
        return found.decode() if found else None

    def _activations(self) -> dict[str, float]:
        now_h = _hours()
        return {k.decode(): math.exp(score - self.activation_decay * now_h)
                for k, score in self.connection.zrange(self._key("activation"), 0, -1, withscores=True)}

    def get_activation(self, concept: str) -> float:
        cid = self._resolve(concept)
        if cid is None:
            return 0.0
        score = self.connection.zscore(self._key("activation"), cid)
        return 0.0 if score is None else math.exp(score - self.activation_decay * _hours())

    def get_concept(self, concept: str) -> dict | None:
        cid = self._resolve(concept)
        if cid is None:
            return None
        found = self._concepts([cid])
        return found[0] if found else None

    def _concepts(self, ids: list[str]) -> list[dict]:
        if not ids:
            return []
        raw = self.connection.hmget(self._key("concepts"), ids)
        acts = self._activations()
        out = []
        for r in raw:
            if r is not None:
                c = self._loads(r)
                c.pop("name_key", None)
                c["activation"] = acts.get(c["concept_id"], 0.0)
                out.append(c)
        return out

    def _all(self) -> list[dict]:
        return self._concepts([k.decode() for k in self.connection.hkeys(self._key("concepts"))])

    def _relations_of(self, cid: str) -> list[dict]:
        rids = [r.decode() for r in self.connection.smembers(f"{self.key_base}:adj:{cid}")]
        if not rids:
            return []
        raw = self.connection.hmget(self._key("relations"), sorted(rids))
        return [self._loads(r) for r in raw if r is not None]

    def get_concept_relationships(self, concept: str) -> list[dict]:
        cid = self._resolve(concept)
        return [] if cid is None else self._relations_of(cid)

    def retrieve_by_activation(self, threshold: float = 0.3, limit: int = 10) -> list[dict]:
        """Concepts at least ``threshold`` active now, most active first."""
        if limit <= 0:
            return []
        low = math.log(max(threshold, 1e-9)) + self.activation_decay * _hours()
        ids = self.connection.zrevrangebyscore(self._key("activation"), "+inf", low, start=0, num=limit)
        return self._concepts([i.decode() for i in ids])

    def retrieve_by_association(self, concepts: Iterable[str], max_hops: int = 2, limit: int = 10) -> list[dict]:
        """Concepts within ``max_hops`` relations of the given ones, nearest first."""
        if isinstance(concepts, str):
            concepts = [concepts]
        seeds = {c for c in (self._resolve(x) for x in concepts) if c}
        distance: dict[str, int] = {}
        frontier = set(seeds)
        for hop in range(1, max_hops + 1):
            following = set()
            for cid in frontier:
                for rel in self._relations_of(cid):
                    for other in (rel["source_id"], rel["target_id"]):
                        if other not in seeds and other not in distance:
                            distance[other] = hop
                            following.add(other)
            frontier = following
        ordered = sorted(distance, key=lambda c: (distance[c], c))[:max(0, limit)]
        return self._concepts(ordered)

    def retrieve_by_similarity(self, text: str, limit: int = 10) -> list[dict]:
        """Concepts whose name and description share the most words (Jaccard) with text."""
        words = scoring.tokens(validate_content(text, "text"))
        scored = []
        for c in self._all():
            other = scoring.tokens(f"{c['name']} {c['description']}")
            union = words | other
            sim = len(words & other) / len(union) if union else 0.0
            if sim > 0:
                scored.append((sim, c))
        scored.sort(key=lambda t: -t[0])
        return [dict(c, similarity=s) for s, c in scored[:max(0, limit)]]

    def retrieve_by_type(self, concept_type: ConceptType | str, limit: int = 10) -> list[dict]:
        kind = _enum(ConceptType, concept_type).value
        found = [c for c in self._all() if c["concept_type"] == kind]
        found.sort(key=lambda c: (-c["activation"], -c["importance"]))
        return found[:max(0, limit)]

    def __len__(self) -> int:
        return int(self.connection.hlen(self._key("concepts")))

    def relation_count(self) -> int:
        return int(self.connection.hlen(self._key("relations")))

    def get_memory_summary(self) -> dict[str, Any]:
        concepts = self._all()
        return {
            "total_concepts": len(concepts),
            "total_relations": self.relation_count(),
            "concept_types": dict(Counter(c["concept_type"] for c in concepts)),
            "active_concepts": sum(1 for c in concepts if c["activation"] >= 0.3),
            "capacity_utilization": len(concepts) / self.max_concepts,
        }
