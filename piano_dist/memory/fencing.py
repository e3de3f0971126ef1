"""The memory side of fencing: which token a write carries, what its refusal raises.

Tokens belong to the ResourceCoordinator (``piano_dist.resources.fencing``). Following
its convention, every memory write script takes ARGV[1] = fence key ('' = unfenced) and
ARGV[2] = token (``--!include fence_check``), and replies ``FENCED …`` when the key
holds a newer grant.
"""
from __future__ import annotations

from ..errors import FencedWriteRejected
from ..resources.fencing import current_fence  # noqa: F401  (the memories' import point)


def rejected(resource_id: str, reply: str) -> Exception:
    return FencedWriteRejected(
        f"write to memory {resource_id!r} refused: a newer lock was granted since ({reply})"
    )
