"""The generative agents' associative memory (``persona.a_mem``) on Redis.

Same calls as the original — ``add_event/add_thought/add_chat(created, expiration, s, p,
o, description, keywords, poignancy, embedding_pair, filling)``, ``seq_event``,
``get_summarized_latest_events``, ``retrieve_relevant_events/thoughts``,
``get_last_chat`` — plus ``retrieve``, the recency/importance/relevance ranking the
original kept in ``retrieve.new_retrieve``. Poignancy keeps its 0..10 scale.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterable, Sequence

from . import scoring
from .store import MemoryStore
from .timeutil import from_epoch, to_epoch
from .validation import (
    validate_content, validate_embedding, validate_importance, validate_label, validate_labels,
    validate_metadata,
)

NODE_TYPES = ("event", "thought", "chat")
MAX_POIGNANCY = 10.0


@dataclass(eq=False)
class ConceptNode:
    node_id: str
    node_count: int
    type_count: int
    node_type: str
    depth: int
    created: datetime
    expiration: datetime | None
    last_accessed: datetime
    subject: str | None
    predicate: str | None
    object: str | None
    description: str
    embedding_key: str
    poignancy: float
    keywords: set[str] = field(default_factory=set)
    filling: Any = None

    @property
    def type(self) -> str:  # the original's attribute name
        return self.node_type

    def spo_summary(self) -> tuple[str | None, str | None, str | None]:
        return (self.subject, self.predicate, self.object)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConceptNode) and other.node_id == self.node_id

    def __hash__(self) -> int:
        return hash(self.node_id)


@dataclass
class ScoredNode:
    node: ConceptNode
    score: float
    recency: float
    importance: float
    relevance: float


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class AssociativeMemory(MemoryStore):
    kind = "associative"
    resource_type_name = "associative_memory"
    parts = ("nodes", "order", "embeddings", "emb_refs", "accessed")
    dynamic_parts = ("bytype", "kw", "kwstr")

    def __init__(self, max_nodes: int = 10_000, **where):
        if not isinstance(max_nodes, int) or isinstance(max_nodes, bool) or max_nodes < 1:
            raise ValueError(f"max_nodes must be a positive int, not {max_nodes!r}")
        self.max_nodes = max_nodes
        super().__init__(**where)

    def _config(self) -> dict:
        return {"max_nodes": self.max_nodes}

    # --- writes ------------------------------------------------------------------------
    def add_event(self, created=None, expiration=None, s=None, p=None, o=None, description=None,
                  keywords=None, poignancy=None, embedding_pair=None, filling=None, *,
                  content: str | None = None, importance: float | None = None) -> ConceptNode:
        """Generative agents' signature; also ``add_event(content, importance)`` (0..1),
        the short form of the migration guide, stored with poignancy = importance × 10."""
        if content is not None or (isinstance(created, str) and description is None):
            text = content if content is not None else created
            weight = importance if content is not None or expiration is None else expiration
            weight = validate_importance(0.5 if weight is None else weight, "importance")
            text = validate_content(text, "content")
            return self._add("event", datetime.now(), None, self.agent_id, None, None, text,
                             sorted(scoring.tokens(text))[:20], weight * MAX_POIGNANCY, None, None)
        return self._add("event", created, expiration, s, p, o, description, keywords, poignancy,
                         embedding_pair, filling)

    def add_thought(self, created, expiration, s, p, o, description, keywords, poignancy,
                    embedding_pair, filling) -> ConceptNode:
        return self._add("thought", created, expiration, s, p, o, description, keywords, poignancy,
                         embedding_pair, filling)

    def add_chat(self, created, expiration, s, p, o, description, keywords, poignancy,
                 embedding_pair, filling) -> ConceptNode:
        return self._add("chat", created, expiration, s, p, o, description, keywords, poignancy,
                         embedding_pair, filling)

    def _add(self, node_type, created, expiration, s, p, o, description, keywords, poignancy,
             embedding_pair, filling) -> ConceptNode:
        if not isinstance(created, datetime):
            raise ValueError(f"created must be a datetime, not {created!r}")
        if expiration is not None and not isinstance(expiration, datetime):
            raise ValueError(f"expiration must be a datetime or None, not {expiration!r}")
        s, p, o = (validate_content(x, n) if x is not None else None
                   for x, n in ((s, "s"), (p, "p"), (o, "o")))
        description = validate_content(description, "description")
        keywords = [k.lower() for k in validate_labels(list(keywords or ()), "keywords")]
        keywords = list(dict.fromkeys(keywords))
        poignancy = validate_importance(poignancy, "poignancy", high=MAX_POIGNANCY)
        if embedding_pair is not None:
            if not isinstance(embedding_pair, (tuple, list)) or len(embedding_pair) != 2:
                raise ValueError("embedding_pair must be (embedding_key, vector)")
            embedding_key = validate_content(embedding_pair[0], "embedding_pair[0]")
            vector = validate_embedding(embedding_pair[1], "embedding_pair[1]")
        else:
            embedding_key, vector = description, None
        filling = validate_metadata({"filling": filling})["filling"]
        depth = self._depth(node_type, filling)
        counted = node_type != "chat" and f"{p} {o}" != "is idle"
        body = {"node_type": node_type, "depth": depth, "created": _iso(created),
                "expiration": _iso(expiration), "subject": s, "predicate": p, "object": o,
                "description": description, "embedding_key": embedding_key, "poignancy": poignancy,
                "keywords": keywords, "filling": filling, "kw_counted": counted}
        node_id, node_count, type_count, _ = self._write(
            "memory_assoc_add",
            [self._key("nodes"), self._key("order"), self._key("seq"), self._key("embeddings"),
             self._key("emb_refs"), self._key("accessed")],
            [self.key_base, node_type, self._dumps(body), self._dumps(keywords), embedding_key,
             self._dumps(vector) if vector is not None else "", "1" if counted else "0",
             self.max_nodes, repr(created.timestamp())],
        )
        return self._node({**body, "node_id": node_id.decode(), "node_count": int(node_count),
                           "type_count": int(type_count)}, created.timestamp())

    def _depth(self, node_type: str, filling: Any) -> int:
        """A thought is one deeper than the deepest node it was drawn from (as originally)."""
        if node_type != "thought" or not filling or not isinstance(filling, list):
            return 0
        ids = [f for f in filling if isinstance(f, str)]
        parents = self.get_nodes(ids) if ids else []
        return 1 + max((n.depth for n in parents), default=0)

    # --- reading nodes -----------------------------------------------------------------
    def _node(self, data: dict, last_accessed: float | None) -> ConceptNode:
        return ConceptNode(
            node_id=data["node_id"], node_count=int(data["node_count"]),
            type_count=int(data["type_count"]), node_type=data["node_type"],
            depth=int(data.get("depth", 0)),
            created=datetime.fromisoformat(data["created"]),
            expiration=datetime.fromisoformat(data["expiration"]) if data.get("expiration") else None,
            last_accessed=from_epoch(last_accessed) if last_accessed is not None
            else datetime.fromisoformat(data["created"]),
            subject=data.get("subject"), predicate=data.get("predicate"), object=data.get("object"),
            description=data["description"], embedding_key=data["embedding_key"],
            poignancy=data["poignancy"], keywords=set(data.get("keywords") or ()),
            filling=data.get("filling"),
        )

    def get_nodes(self, node_ids: Sequence[str]) -> list[ConceptNode]:
        """Nodes for these ids, in that order; ids evicted meanwhile are skipped."""
        node_ids = list(node_ids)
        if not node_ids:
            return []
        pipe = self.connection.pipeline(transaction=False)
        pipe.hmget(self._key("nodes"), node_ids)
        pipe.hmget(self._key("accessed"), node_ids)
        raw, accessed = pipe.execute()
        return [self._node(self._loads(r), float(a) if a is not None else None)
                for r, a in zip(raw, accessed) if r is not None]

    def get_node(self, node_id: str) -> ConceptNode | None:
        found = self.get_nodes([node_id])
        return found[0] if found else None

    def _seq(self, node_type: str, limit: int | None = None) -> list[ConceptNode]:
        stop = -1 if limit is None else limit - 1
        if limit is not None and limit <= 0:
            return []
        ids = self.connection.zrevrange(f"{self.key_base}:bytype:{node_type}", 0, stop)
        return self.get_nodes([i.decode() for i in ids])

    @property
    def seq_event(self) -> list[ConceptNode]:
        return self._seq("event")

    @property
    def seq_thought(self) -> list[ConceptNode]:
        return self._seq("thought")

    @property
    def seq_chat(self) -> list[ConceptNode]:
        return self._seq("chat")

    def _kw_strength(self, node_type: str) -> dict[str, int]:
        raw = self.connection.hgetall(f"{self.key_base}:kwstr:{node_type}")
        return {k.decode(): int(v) for k, v in raw.items()}

    @property
    def kw_strength_event(self) -> dict[str, int]:
        return self._kw_strength("event")

    @property
    def kw_strength_thought(self) -> dict[str, int]:
        return self._kw_strength("thought")

    def get_embedding(self, embedding_key: str) -> list[float] | None:
        return self._loads(self.connection.hget(self._key("embeddings"), embedding_key))

    def __len__(self) -> int:
        return int(self.connection.zcard(self._key("order")))

    # --- the original's lookups -------------------------------------------------------
    def get_summarized_latest_events(self, retention: int) -> set[tuple]:
        return {node.spo_summary() for node in self._seq("event", retention)}

    def _by_keywords(self, node_type: str, words: Iterable[str | None]) -> set[ConceptNode]:
        ids: list[str] = []
        for word in words:
            if word:  # the original checked the raw word but indexed the lower-cased one
                ids += [i.decode() for i in self.connection.zrevrange(
                    f"{self.key_base}:kw:{node_type}:{word.lower()}", 0, -1)]
        return set(self.get_nodes(list(dict.fromkeys(ids))))

    def retrieve_relevant_events(self, s_content, p_content, o_content) -> set[ConceptNode]:
        return self._by_keywords("event", (s_content, p_content, o_content))

    def retrieve_relevant_thoughts(self, s_content, p_content, o_content) -> set[ConceptNode]:
        return self._by_keywords("thought", (s_content, p_content, o_content))

    def get_last_chat(self, target_persona_name: str) -> ConceptNode | None:
        ids = self.connection.zrevrange(
            f"{self.key_base}:kw:chat:{target_persona_name.lower()}", 0, 0)
        return self.get_node(ids[0].decode()) if ids else None

    # --- ranked retrieval -------------------------------------------------------------
    def retrieve(self, focal_points: str | Sequence[str], n: int = 30, embedding: Any = None, *,
                 weights: Sequence[float] = scoring.DEFAULT_WEIGHTS,
                 recency_decay: float = scoring.RECENCY_DECAY, now: datetime | None = None,
                 mark_accessed: bool = True) -> list[ConceptNode] | dict[str, list[ConceptNode]]:
        """The ``n`` events and thoughts that best fit each focal point.

        ``embedding`` is the query's vector (one focal point), a dict focal point → vector,
        or a callable text → vector; without one, relevance is keyword overlap. A string
        returns a list, a list of focal points a dict (as ``new_retrieve`` did). Retrieved
        nodes count as accessed now, which raises their recency next time.
        """
        single = isinstance(focal_points, str)
        focals = [focal_points] if single else list(focal_points)
        results = {f: self.retrieve_scored(f, n, self._query_vector(embedding, f, single),
                                           weights=weights, recency_decay=recency_decay)
                   for f in focals}
        if mark_accessed:
            self.mark_accessed({s.node.node_id for found in results.values() for s in found}, now)
        nodes = {f: [s.node for s in found] for f, found in results.items()}
        return nodes[focal_points] if single else nodes

    @staticmethod
    def _query_vector(embedding: Any, focal: str, single: bool):
        if embedding is None:
            return None
        if callable(embedding):
            return embedding(focal)
        if isinstance(embedding, dict):
            return embedding.get(focal)
        if single:
            return embedding
        raise ValueError("with several focal points, embedding must be a dict or a callable")

    def retrieve_scored(self, query: str, n: int = 30, query_embedding: Sequence[float] | None = None, *,
                        weights: Sequence[float] = scoring.DEFAULT_WEIGHTS,
                        recency_decay: float = scoring.RECENCY_DECAY) -> list[ScoredNode]:
        """Like ``retrieve`` for one query, with each node's three normalised scores."""
        if n <= 0:
            return []
        nodes = [node for node in self._seq("event") + self._seq("thought")
                 if "idle" not in node.embedding_key]
        if not nodes:
            return []
        by_recent = sorted(nodes, key=lambda x: (x.last_accessed.timestamp(), x.node_count), reverse=True)
        rec = scoring.recency([x.node_id for x in by_recent], recency_decay)
        imp = {x.node_id: float(x.poignancy) for x in nodes}
        if query_embedding is not None:
            keys = list(dict.fromkeys(x.embedding_key for x in nodes))
            vectors = dict(zip(keys, self.connection.hmget(self._key("embeddings"), keys)))
            rel = {x.node_id: scoring.cosine(query_embedding, self._loads(vectors[x.embedding_key]))
                   for x in nodes}
        else:
            words = scoring.tokens(query)
            rel = {x.node_id: scoring.keyword_overlap(words, x.keywords | scoring.tokens(x.description))
                   for x in nodes}
        scored = scoring.combine(rec, imp, rel, weights)
        by_id = {x.node_id: x for x in nodes}
        ranked = sorted(scored.items(), key=lambda kv: (-kv[1][0], -by_id[kv[0]].node_count))[:n]
        return [ScoredNode(by_id[k], *v) for k, v in ranked]

    def mark_accessed(self, node_ids: Iterable[str], when: datetime | None = None) -> int:
        node_ids = list(node_ids)
        if not node_ids:
            return 0
        return int(self.scripts.memory_touch(
            keys=[self._key("nodes"), self._key("access_n"), self._key("accessed")],
            args=[repr(to_epoch(when, "when")), "0", *node_ids]))
