"""DistributedReflectionModule: turns recent memories into insights when enough has
happened — the generative agents' reflection, safe to run from any worker.

Trigger: the poignancy of the nodes added since the last reflection sums past
``importance_threshold``. The memory keeps a running total of the poignancy ever added
and the last reflection's reading of it lives in Redis, so every process agrees on
what is new and the check is one read, however long the agent has lived. A Redis lock
(token-checked, expiring) lets one reflection per agent run at a time. A reflection asks for ``focal_points`` questions
about the recent memories, retrieves evidence for each concurrently, and stores one
insight per question as a thought (filling = its evidence ids).
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import redis
import redis_lock

from ..core.fanout import fan_out
from ..keys import Keys
from ..memory import scoring
from .planning import parse_steps
from .plumbing import (ConfiguredModule, associative_memory, latest_nodes, node_summary, resolve_agent_id,
                       resolve_connection, resolve_llm)

INSIGHT_LIFETIME = timedelta(days=30)


class DistributedReflectionModule(ConfiguredModule):
    def __init__(self, agent_state: Any = None, importance_threshold: float = 30.0, recent_count: int = 20,
                 focal_points: int = 3, evidence_count: int = 5, *, agent_id: str | None = None,
                 memory_name: str = "default", llm: Any = "auto", max_workers: int = 3,
                 lock_timeout: float = 120.0, connection: redis.Redis | None = None,
                 redis_url: str | None = None, prefix: str | None = None):
        if importance_threshold <= 0:
            raise ValueError("importance_threshold must be positive")
        super().__init__(agent_state, importance_threshold=importance_threshold, recent_count=recent_count,
                         focal_points=focal_points, evidence_count=evidence_count, agent_id=agent_id,
                         memory_name=memory_name, llm=llm if isinstance(llm, str) else None,
                         max_workers=max_workers, lock_timeout=lock_timeout, redis_url=redis_url, prefix=prefix)
        self.importance_threshold = float(importance_threshold)
        self.recent_count = recent_count
        self.focal_points = focal_points
        self.evidence_count = evidence_count
        self.max_workers = max_workers
        self.lock_timeout = lock_timeout
        self.connection = resolve_connection(agent_state, connection, redis_url)
        self.keys = Keys(prefix)
        self.agent_id = resolve_agent_id(agent_state, agent_id)
        self.llm = resolve_llm(llm, self.connection)
        self.memory = associative_memory(self.agent_id, memory_name, self.connection, prefix)

    # --- trigger ------------------------------------------------------------------------
    def importance_since_last(self) -> float:
        """Poignancy summed over the events and thoughts added since the last reflection
        (one read: the memory's running total less the last reflection's reading)."""
        total, seen = self.connection.mget(self.memory.poignancy_key,
                                           self.keys.reflection_key(self.agent_id, "seen"))
        return max(0.0, (int(total or 0) - int(seen or 0)) / 1000)

    def should_reflect(self) -> bool:
        return self.importance_since_last() >= self.importance_threshold

    # --- reflection ---------------------------------------------------------------------
    def run(self, force: bool = False) -> dict[str, Any]:
        """Reflect if the trigger fired (or ``force``); JSON result either way."""
        importance = self.importance_since_last()
        if not force and importance < self.importance_threshold:
            return {"agent_id": self.agent_id, "reflected": False, "importance": importance,
                    "threshold": self.importance_threshold}
        return {**self.reflect(), "importance": importance, "threshold": self.importance_threshold}

    def reflect(self) -> dict[str, Any]:
        # An exclusive lease lock is all this needs: python-redis-lock's, renewed while the
        # reflection runs, so a slow LLM cannot let a second reflection in.
        lock = redis_lock.Lock(self.connection, self.keys.reflection_key(self.agent_id, "running"),
                               expire=max(1, int(self.lock_timeout)), auto_renewal=True)
        if not lock.acquire(blocking=False):
            return {"agent_id": self.agent_id, "reflected": False, "reason": "another reflection is running"}
        try:
            return self._reflect_locked()
        finally:
            try:
                lock.release()
            except redis_lock.NotAcquired:  # expired meanwhile: nothing left to release
                pass

    def _reflect_locked(self) -> dict[str, Any]:
        recent = sorted(latest_nodes(self.memory, "event", self.recent_count)
                        + latest_nodes(self.memory, "thought", self.recent_count),
                        key=lambda n: n.node_count, reverse=True)[:self.recent_count]
        if not recent:
            return {"agent_id": self.agent_id, "reflected": False, "reason": "no memories"}
        newest = max(n.node_count for n in recent)
        questions = self._focal_points(recent)
        thoughts = [t for t in fan_out(lambda q: self._insight(q, newest), questions, self.max_workers)
                    if t is not None]
        # Read the total after the thoughts just written, so a reflection never triggers
        # the next one by itself.
        self.connection.set(self.keys.reflection_key(self.agent_id, "seen"),
                            round(self.memory.poignancy_total() * 1000))
        return {"agent_id": self.agent_id, "reflected": True, "focal_points": questions,
                "thoughts": [node_summary(t) for t in thoughts]}

    def _focal_points(self, recent: list) -> list[str]:
        statements = "\n".join(n.description for n in recent)
        if self.llm is None:
            return [n.description for n in sorted(recent, key=lambda n: -n.poignancy)[:self.focal_points]]
        reply = self.llm.complete(f"{statements}\n\nGiven only the information above, list {self.focal_points} "
                                  f"most salient high-level questions we can answer about the subjects "
                                  f"in the statements.")
        return parse_steps(reply, self.focal_points) or [recent[0].description]

    def _insight(self, question: str, newest: int):
        # Evidence comes from the memories as they were when this reflection began: the
        # insights written by its sibling threads meanwhile are not evidence for each other.
        scored = self.memory.retrieve_scored(question, self.evidence_count + self.focal_points)
        evidence = [s.node for s in scored if s.node.node_count <= newest][:self.evidence_count]
        if not evidence:
            return None
        numbered = "\n".join(f"{i + 1}. {n.description}" for i, n in enumerate(evidence))
        if self.llm is not None:
            reply = self.llm.complete(f"Statements about {self.agent_id}:\n{numbered}\n\nWhat high-level insight "
                                      f"can you infer from the above statements about: {question}")
            insight = (parse_steps(reply, 1) or [question])[0]
            rating = self.llm.complete(f"On the scale of 1 to 10, how poignant is this insight for "
                                       f"{self.agent_id}: {insight}? Answer with a number.")
            digits = "".join(ch for ch in rating if ch.isdigit())[:2]
            poignancy = float(max(1, min(10, int(digits)))) if digits else 5.0
            embedding = self.llm.embed(insight)
        else:
            insight = f"{self.agent_id} reflects on {question}"
            poignancy = max(n.poignancy for n in evidence)
            embedding = None
        now = datetime.now()
        keywords = sorted(scoring.tokens(insight))[:10]
        return self.memory.add_thought(now, now + INSIGHT_LIFETIME, self.agent_id, "realizes", insight[:200],
                                       insight, keywords, poignancy,
                                       (insight, embedding) if embedding is not None else None,
                                       [n.node_id for n in evidence])
