"""The fencing token a state write carries, when the writer holds a WRITE lock on
the "agent_state" resource (see :mod:`piano_dist.resources.fencing`)."""
from __future__ import annotations

from ..resources.fencing import current_fence as _resource_fence

AGENT_STATE_RESOURCE = "agent_state"


def current_fence(resource_id: str = AGENT_STATE_RESOURCE) -> tuple[str, int] | None:
    return _resource_fence(resource_id)
