"""The generative agents' associative memory (``persona.a_mem``) on Redis.

Every call is one round trip: writes (several nodes at once) are one script, reads
one script that returns nodes with their last-access times (and vectors when asked).
Retrieval scores a bounded candidate set — the most recently accessed, the most
important and the keyword-matching nodes, ``candidates`` (default 128) of each — with
numpy, so its cost does not grow with the memory; for memories up to that size it is
the exact generative-agents ranking.

Same calls as the original — ``add_event/add_thought/add_chat(created, expiration, s, p,
o, description, keywords, poignancy, embedding_pair, filling)``, ``seq_event``,
``get_summarized_latest_events``, ``retrieve_relevant_events/thoughts``,
``get_last_chat`` — plus ``retrieve``, the recency/importance/relevance ranking the
original kept in ``retrieve.new_retrieve``. Poignancy keeps its 0..10 scale.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable, Sequence

if TYPE_CHECKING:  # numpy is imported where vectors are scored: a worker that never
    import numpy as np  # touches memories does not carry it (~14 MB)

from ..arguments import is_whole
from ..replies import as_text
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


_VECTOR_DTYPE = "<f8"  # packed little-endian float64
_VECTOR_ITEMSIZE = 8


def pack_vector(vector: Sequence[float]) -> bytes:
    """Embeddings are stored as packed little-endian float64 (8 bytes a number, exact)."""
    import numpy as np
    return np.asarray(vector, dtype=_VECTOR_DTYPE).tobytes()


def unpack_vector(raw: bytes | str | None) -> np.ndarray | None:
    import numpy as np
    if raw is None or raw is False or raw == b"":
        return None
    if isinstance(raw, str):
        raw = raw.encode()
    if raw[:1] == b"[":  # written as JSON by an earlier version
        return np.asarray(json.loads(raw), dtype=np.float64)
    if len(raw) % _VECTOR_ITEMSIZE:
        return None
    return np.frombuffer(raw, dtype=_VECTOR_DTYPE)


class AssociativeMemory(MemoryStore):
    kind = "associative"
    resource_type_name = "associative_memory"
    parts = ("nodes", "order", "seq", "embeddings", "emb_refs", "recent", "important", "poignancy", "dedupe")
    dynamic_parts = ("bytype", "kw", "kwstr")

    def __init__(self, max_nodes: int = 10_000, candidates: int = 128, **where):
        for label, value in (("max_nodes", max_nodes), ("candidates", candidates)):
            if not is_whole(value) or value < 1:
                raise ValueError(f"{label} must be a positive int, not {value!r}")
        self.max_nodes = max_nodes
        self.candidates = candidates
        super().__init__(**where)

    def _config(self) -> dict:
        return {"max_nodes": self.max_nodes, "candidates": self.candidates}

    # --- writes ------------------------------------------------------------------------
    def add_event(self, created=None, expiration=None, s=None, p=None, o=None, description=None,
                  keywords=None, poignancy=None, embedding_pair=None, filling=None, *,
                  content: str | None = None, importance: float | None = None,
                  dedupe: str | None = None) -> ConceptNode:
        """Generative agents' signature; also ``add_event(content, importance)`` (0..1),
        the short form of the migration guide, stored with poignancy = importance × 10.
        ``dedupe``: a key naming this write; a second add with the same key returns the
        first node instead of adding another (a task re-run after a crash)."""
        if content is not None or (isinstance(created, str) and description is None):
            text = content if content is not None else created
            weight = importance if content is not None or expiration is None else expiration
            weight = validate_importance(0.5 if weight is None else weight, "importance")
            text = validate_content(text, "content")
            return self.add_many([("event", datetime.now(), None, self.agent_id, None, None, text,
                                   sorted(scoring.tokens(text))[:20], weight * MAX_POIGNANCY, None, None)],
                                 dedupe=[dedupe])[0]
        return self.add_many([("event", created, expiration, s, p, o, description, keywords, poignancy,
                               embedding_pair, filling)], dedupe=[dedupe])[0]

    def add_thought(self, created, expiration, s, p, o, description, keywords, poignancy,
                    embedding_pair, filling) -> ConceptNode:
        return self.add_many([("thought", created, expiration, s, p, o, description, keywords, poignancy,
                               embedding_pair, filling)])[0]

    def add_chat(self, created, expiration, s, p, o, description, keywords, poignancy,
                 embedding_pair, filling) -> ConceptNode:
        return self.add_many([("chat", created, expiration, s, p, o, description, keywords, poignancy,
                               embedding_pair, filling)])[0]

    def add_many(self, nodes: Sequence[tuple], dedupe: Sequence[str | None] | None = None) -> list[ConceptNode]:
        """Add several nodes in one write: each is (node_type, created, expiration, s, p,
        o, description, keywords, poignancy, embedding_pair, filling), the arguments of
        ``add_event``. All are validated before anything is written."""
        dedupe = list(dedupe or [None] * len(nodes))
        if len(dedupe) != len(nodes):
            raise ValueError("dedupe must name one key (or None) per node")
        groups: list = []
        bodies: list[tuple[dict, float]] = []
        for spec, key in zip(nodes, dedupe):
            body, group, created = self._prepare(*spec, dedupe=key)
            groups += group
            bodies.append((body, created))
        if not groups:
            return []
        reply = self._write("memory_assoc_add", [self._key("nodes")],
                            [self.key_base, self.max_nodes, *groups])
        added = []
        for (body, created), (node_id, node_count, type_count) in zip(bodies, reply[:-1]):
            node_id = node_id.decode() if isinstance(node_id, bytes) else node_id
            added.append(self._node({**body, "node_count": int(node_count), "type_count": int(type_count)},
                                    created, node_id))
        return added

    def _prepare(self, node_type, created, expiration, s, p, o, description, keywords, poignancy,
                 embedding_pair, filling, dedupe: str | None = None) -> tuple[dict, list, float]:
        if node_type not in NODE_TYPES:
            raise ValueError(f"node type must be one of {', '.join(NODE_TYPES)}, not {node_type!r}")
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
        if dedupe is not None:
            dedupe = validate_label(dedupe, "dedupe")
        filling = validate_metadata({"filling": filling})["filling"]
        depth = self._depth(node_type, filling)
        counted = node_type != "chat" and f"{p} {o}" != "is idle"
        # Only what differs from the defaults is stored (the reader fills them in).
        body: dict[str, Any] = {"node_type": node_type, "created": _iso(created), "subject": s,
                                "predicate": p, "object": o, "description": description,
                                "poignancy": poignancy, "keywords": keywords}
        optional = {"depth": depth or None, "expiration": _iso(expiration), "filling": filling,
                    "embedding_key": embedding_key if embedding_key != description else None,
                    "has_embedding": False if embedding_pair is None else None,
                    "kw_counted": True if counted else None, "dedupe": dedupe}
        body.update({k: v for k, v in optional.items() if v is not None})
        stamp = created.timestamp()
        group = [node_type, self._dumps(body), self._dumps(keywords),
                 embedding_key if embedding_pair is not None else "",
                 pack_vector(vector) if vector is not None else "", "1" if counted else "0",
                 repr(stamp), repr(float(poignancy)), dedupe or ""]
        return body, group, stamp

    def _depth(self, node_type: str, filling: Any) -> int:
        """A thought is one deeper than the deepest node it was drawn from (as originally)."""
        if node_type != "thought" or not filling or not isinstance(filling, list):
            return 0
        ids = [f for f in filling if isinstance(f, str)]
        parents = self.get_nodes(ids) if ids else []
        return 1 + max((n.depth for n in parents), default=0)

    # --- reading nodes -----------------------------------------------------------------
    def _node(self, data: dict, last_accessed: float | None, node_id: str) -> ConceptNode:
        """A node from its stored body. The id is its hash field, node_<count>: a body holds
        neither (one an earlier version stored holds both)."""
        created = datetime.fromisoformat(data["created"])
        count = data.get("node_count")
        if count is None:
            count = int(node_id[5:]) if node_id.startswith("node_") and node_id[5:].isdecimal() else 0
        return ConceptNode(
            node_id=node_id, node_count=int(count),
            type_count=int(data["type_count"]), node_type=data["node_type"],
            depth=int(data.get("depth") or 0), created=created,
            expiration=datetime.fromisoformat(data["expiration"]) if data.get("expiration") else None,
            last_accessed=from_epoch(last_accessed) if last_accessed is not None else created,
            subject=data.get("subject"), predicate=data.get("predicate"), object=data.get("object"),
            description=data["description"], embedding_key=data.get("embedding_key") or data["description"],
            poignancy=data["poignancy"], keywords=set(data.get("keywords") or ()),
            filling=data.get("filling"),
        )

    def _read(self, mode: str, *args: Any, vectors: bool = False) -> tuple[list[ConceptNode], list]:
        """One read script call: the nodes (and their vectors when asked)."""
        ids, raws, times, packed = self.scripts.memory_assoc_read(
            keys=[self._key("nodes")], args=[self.key_base, "1" if vectors else "0", mode, *args])
        nodes = [self._node(self._loads(raw), float(t) if t not in (None, b"", "") else None, as_text(node_id))
                 for node_id, raw, t in zip(ids, raws, times)]
        return nodes, ([unpack_vector(v) for v in packed] if vectors else [])

    def get_nodes(self, node_ids: Sequence[str]) -> list[ConceptNode]:
        """Nodes for these ids, in that order; ids evicted meanwhile are skipped."""
        node_ids = [str(i) for i in node_ids]
        found: list[ConceptNode] = []
        for start in range(0, len(node_ids), 1000):
            found += self._read("ids", *node_ids[start:start + 1000])[0]
        return found

    def get_node(self, node_id: str) -> ConceptNode | None:
        found = self.get_nodes([node_id])
        return found[0] if found else None

    def latest(self, node_type: str, limit: int) -> list[ConceptNode]:
        """The ``limit`` newest nodes of one type, newest first."""
        if limit <= 0:
            return []
        return self._read("latest", node_type, int(limit))[0]

    def after(self, node_count: int, limit: int = 1000) -> list[ConceptNode]:
        """Nodes added after the one numbered ``node_count`` (any type), oldest first."""
        return self._read("after", int(node_count), int(limit))[0]

    def _seq(self, node_type: str, limit: int | None = None) -> list[ConceptNode]:
        if limit is None:
            ids = self.connection.zrevrange(f"{self.key_base}:bytype:{node_type}", 0, -1)
            return self.get_nodes([i.decode() for i in ids])
        return self.latest(node_type, limit)

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
        vector = unpack_vector(self.connection.hget(self._key("embeddings"), embedding_key))
        return None if vector is None else vector.tolist()

    @property
    def poignancy_key(self) -> str:
        """Key of the running poignancy total (for callers that read it with other keys)."""
        return self._key("poignancy")

    def poignancy_total(self) -> float:
        """Poignancy of every event and thought ever added (evictions do not lower it):
        the difference between two readings is what was added in between."""
        return int(self.connection.get(self._key("poignancy")) or 0) / 1000

    def __len__(self) -> int:
        return int(self.connection.zcard(self._key("order")))

    # --- the original's lookups -------------------------------------------------------
    def get_summarized_latest_events(self, retention: int) -> set[tuple]:
        return {node.spo_summary() for node in self.latest("event", retention)}

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
        import numpy as np
        if n <= 0:
            return []
        words = scoring.tokens(query)
        with_vectors = query_embedding is not None
        found, vectors = self._read("candidates", self.candidates, *sorted(words), vectors=with_vectors)
        keep = [i for i, x in enumerate(found)
                if x.node_type in ("event", "thought") and "idle" not in x.embedding_key]
        if not keep:
            return []
        nodes = [found[i] for i in keep]
        # Recency: rank by last access, then by age, most recent first (rank 0 → decay**1).
        order = sorted(range(len(nodes)), key=lambda i: (nodes[i].last_accessed.timestamp(),
                                                         nodes[i].node_count), reverse=True)
        recency = np.empty(len(nodes))
        recency[order] = recency_decay ** np.arange(1, len(nodes) + 1)
        importance = np.array([float(x.poignancy) for x in nodes])
        if with_vectors:
            relevance = scoring.cosines(query_embedding, [vectors[i] for i in keep])
        else:
            relevance = np.array([scoring.keyword_overlap(words, x.keywords | scoring.tokens(x.description))
                                  for x in nodes])
        total, parts = scoring.combine_arrays(recency, importance, relevance, weights)
        ranked = sorted(range(len(nodes)), key=lambda i: (-total[i], -nodes[i].node_count))[:n]
        return [ScoredNode(nodes[i], float(total[i]), float(parts[0][i]), float(parts[1][i]),
                           float(parts[2][i])) for i in ranked]

    def mark_accessed(self, node_ids: Iterable[str], when: datetime | None = None) -> int:
        """Move the nodes' last access forward to ``when`` (never back); ids no longer
        in the memory are left out. One command."""
        node_ids = list(node_ids)
        if not node_ids:
            return 0
        stamp = to_epoch(when, "when")
        mapping = {str(i): stamp for i in node_ids}
        return int(self.connection.zadd(self._key("recent"), mapping, xx=True, gt=True, ch=True))
