"""What every enhanced module resolves the same way, in a worker or in-process: the
agent's id, the Redis connection, the LLM, the world, the agent's associative memory."""
from __future__ import annotations

import hashlib
import json
from typing import Any

import redis

from ..connection import get_connection
from ..modules.base import BaseModule
from ..state import RedisAgentState, agent_id_of


class ConfiguredModule(BaseModule):
    """A module a worker rebuilds from ``(agent_state, **registration_config)``: its
    ``config`` holds the constructor's JSON arguments."""

    config: dict[str, Any]

    @property
    def registration_config(self) -> dict[str, Any]:
        """JSON config for ``manager.register_module(name, module, module.registration_config)``:
        what a worker needs to rebuild this module (not the local environment or LLM objects)."""
        return {k: v for k, v in self.config.items() if v is not None}


def resolve_connection(agent_state: Any, connection: redis.Redis | None,
                       redis_url: str | None) -> redis.Redis:
    """The given connection; else the one a worker's RedisAgentState already uses; else
    the configured URL (PIANO_REDIS_URL, or the embedded server)."""
    if connection is not None:
        return connection
    if redis_url is None and isinstance(agent_state, RedisAgentState):
        return agent_state.store.conn
    return get_connection(redis_url)


def resolve_agent_id(agent_state: Any, agent_id: str | None) -> str:
    return agent_id_of(agent_state, agent_id)


def resolve_llm(llm: Any, connection: redis.Redis | None):
    """``llm`` may be a client, a kind ("fake"/"openai", JSON-safe config), "auto" (the
    environment's choice: PIANO_LLM, default fake) or None (no LLM). Clients built here
    count their calls in flight in Redis."""
    if llm is None or hasattr(llm, "complete"):
        return llm
    from ..llm import get_llm

    return get_llm(None if llm == "auto" else str(llm), connection=connection)


def llm_tag(llm: Any) -> str | None:
    """What identifies an LLM's answers in a cache key (kind and seed or model)."""
    if llm is None:
        return None
    return f"{type(llm).__name__}:{getattr(llm, 'seed', getattr(llm, 'model', ''))}"


def resolve_environment(environment: Any, world: str | None, connection: redis.Redis,
                        prefix: str | None):
    if environment is not None:
        return environment
    if world is None:
        return None
    from ..world import GridWorld

    return GridWorld(world, connection=connection, prefix=prefix)


def associative_memory(agent_id: str, name: str, connection: redis.Redis, prefix: str | None):
    from ..memory import AssociativeMemory

    return AssociativeMemory(agent_id=agent_id, name=name, connection=connection, prefix=prefix)


def content_digest(value: Any) -> str:
    """sha256 of canonical JSON: the same content gives the same key in every process
    (Python's hash() is salted per process, so it cannot key a shared cache)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                           allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def node_summary(node, scores: dict[str, float] | None = None) -> dict[str, Any]:
    """A memory node as JSON (what retrieval and reflection return from tasks)."""
    summary = {"node_id": node.node_id, "type": node.node_type, "created": node.created.isoformat(),
               "last_accessed": node.last_accessed.isoformat(), "subject": node.subject,
               "predicate": node.predicate, "object": node.object, "description": node.description,
               "poignancy": node.poignancy, "keywords": sorted(node.keywords), "depth": node.depth}
    if scores:
        summary.update({k: round(v, 6) for k, v in scores.items()})
    return summary


def latest_nodes(memory, node_type: str, limit: int) -> list:
    """The ``limit`` newest nodes of one type (events, thoughts, chats), newest first,
    in one round trip."""
    return memory.latest(node_type, limit)


def nodes_after(memory, node_count: int, limit: int = 1000) -> list:
    """Nodes added after the one numbered ``node_count`` (any type), oldest first."""
    return memory.after(node_count, limit)
