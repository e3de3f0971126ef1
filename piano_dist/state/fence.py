"""The fencing token a state write carries, when the writer holds a WRITE lock on
the "agent_state" resource (see :mod:`piano_dist.resources.fencing`).

Imported lazily: state works without the resource coordinator, unfenced.
"""
from __future__ import annotations

from typing import Optional

AGENT_STATE_RESOURCE = "agent_state"


def current_fence(resource_id: str = AGENT_STATE_RESOURCE) -> Optional[tuple[str, int]]:
    try:
        from ..resources.fencing import current_fence as lookup
    except ImportError:
        return None
    fence = lookup(resource_id)
    if not fence:
        return None
    key, token = fence
    return str(key), int(token)
