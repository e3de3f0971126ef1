"""MemoryRetrievalModule: the generative agents' retrieval over the agent's
AssociativeMemory — recency, importance (poignancy) and relevance, each min-max
normalised and weighted (0.5, 3, 2 by default) — for several focal points at once.

Returns node summaries (JSON) with their score and its three parts, so a submitter
gets the same answer from a worker as from a local call.
"""
from __future__ import annotations

from typing import Any, Sequence

import redis

from ..core.fanout import fan_out
from ..memory import scoring
from .plumbing import (ConfiguredModule, associative_memory, node_summary, resolve_agent_id, resolve_connection,
                       resolve_llm)


class MemoryRetrievalModule(ConfiguredModule):
    def __init__(self, agent_state: Any = None, n: int = 10, weights: Sequence[float] = scoring.DEFAULT_WEIGHTS,
                 recency_decay: float = scoring.RECENCY_DECAY, use_embeddings: bool = False, *,
                 agent_id: str | None = None, memory_name: str = "default", llm: Any = None,
                 max_workers: int = 3, mark_accessed: bool = True, connection: redis.Redis | None = None,
                 redis_url: str | None = None, prefix: str | None = None):
        """``use_embeddings``: relevance by cosine of LLM embeddings (``llm``, or "auto"
        when none is given) instead of keyword overlap."""
        weights = [float(w) for w in weights]
        if len(weights) != 3:
            raise ValueError("weights are (recency, importance, relevance)")
        if use_embeddings and llm is None:
            llm = "auto"
        super().__init__(agent_state, n=n, weights=weights, recency_decay=recency_decay,
                         use_embeddings=use_embeddings, agent_id=agent_id, memory_name=memory_name,
                         llm=llm if isinstance(llm, str) else None, max_workers=max_workers,
                         mark_accessed=mark_accessed, redis_url=redis_url, prefix=prefix)
        self.n = n
        self.weights = tuple(weights)
        self.recency_decay = recency_decay
        self.use_embeddings = use_embeddings
        self.max_workers = max_workers
        self.mark_accessed = mark_accessed
        self.connection = resolve_connection(agent_state, connection, redis_url)
        self.agent_id = resolve_agent_id(agent_state, agent_id)
        self.llm = resolve_llm(llm, self.connection)
        self.memory = associative_memory(self.agent_id, memory_name, self.connection, prefix)

    def retrieve(self, query: str, n: int | None = None) -> list[dict[str, Any]]:
        """The ``n`` events and thoughts that best fit ``query``, best first, each with
        ``score``, ``recency``, ``importance`` and ``relevance``."""
        vector = self.llm.embed(query) if self.use_embeddings and self.llm is not None else None
        scored = self.memory.retrieve_scored(query, n or self.n, vector, weights=self.weights,
                                             recency_decay=self.recency_decay)
        if self.mark_accessed and scored:
            self.memory.mark_accessed([s.node.node_id for s in scored])
        return [node_summary(s.node, {"score": s.score, "recency": s.recency, "importance": s.importance,
                                      "relevance": s.relevance}) for s in scored]

    def run(self, focal_points: Sequence[str] | str | None = None, n: int | None = None) -> dict[str, Any]:
        """Retrieve for each focal point concurrently (default: the agent's current
        decision, ``act_description``, else its id)."""
        if isinstance(focal_points, str):
            focal_points = [focal_points]
        focals = list(focal_points or self._default_focal_points())
        if not focals:
            return {"agent_id": self.agent_id, "results": {}}
        found = fan_out(lambda f: self.retrieve(f, n), focals, self.max_workers)
        return {"agent_id": self.agent_id, "results": dict(zip(focals, found))}

    def _default_focal_points(self) -> list[str]:
        decision = None
        getter = getattr(self.agent_state, "get", None)
        if callable(getter):
            try:
                decision = getter("act_description")
            except Exception:  # a state without that path simply has no decision yet
                decision = None
        elif self.agent_state is not None:
            decision = getattr(self.agent_state, "act_description", None)
        return [decision] if isinstance(decision, str) and decision else [self.agent_id]
