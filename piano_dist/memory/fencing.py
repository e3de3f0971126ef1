"""The memory side of fencing: which token a write carries, what its refusal raises.

Tokens belong to the ResourceCoordinator (``piano_dist.resources.fencing``). Following
its convention, every memory write script takes ARGV[1] = fence key ('' = unfenced) and
ARGV[2] = token (``--!include fence_check``), and replies ``FENCED …`` when the key
holds a newer grant, which ``raise_if_fenced`` turns into FencedWriteRejected.
"""
from __future__ import annotations

from ..resources.fencing import current_fence, raise_if_fenced  # noqa: F401  (the memories' import point)
