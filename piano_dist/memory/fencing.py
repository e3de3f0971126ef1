"""The memory side of fencing: which token a write carries, what its refusal raises.

Tokens belong to the ResourceCoordinator (``piano_dist.resources.fencing``). Following
its convention, every memory write script takes ARGV[1] = fence key ('' = unfenced) and
ARGV[2] = token, and replies ``FENCED …`` when the key holds a newer grant. Without the
resources package (a memory used on its own) writes are simply unfenced.
"""
from __future__ import annotations

from .. import errors


def current_fence(resource_id: str) -> tuple[str, int] | None:
    try:
        from ..resources.fencing import current_fence as lookup
    except ImportError:
        return None
    fence = lookup(resource_id)
    if not fence:
        return None
    key, token = fence
    return str(key), int(token)


class _FallbackFencedWriteRejected(errors.PianoError, RuntimeError):
    """Stand-in used only when piano_dist.errors has no FencedWriteRejected."""


def rejection_class() -> type[Exception]:
    return getattr(errors, "FencedWriteRejected", _FallbackFencedWriteRejected)


def rejected(resource_id: str, reply: str) -> Exception:
    return rejection_class()(
        f"write to memory {resource_id!r} refused: a newer lock was granted since ({reply})"
    )
