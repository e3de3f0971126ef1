"""Fencing tokens: how writes to Redis-backed resources refuse a holder that lost its lock.

Every grant of a resource increments the integer at ``Keys(prefix).resource_fence(id)``
and hands that value (the token) to the new holder. A write made under the lock
carries the token; the write's own Lua script refuses it when the stored value is
greater, i.e. when someone was granted the resource after this holder (whose lease
lapsed while it was paused, partitioned or slow).

Convention for other scripts: put the fence key ("" for an unfenced write) and the
token first in ARGV and start the script with ``--!include fence_check``
(lua/includes/fence_check.lua, also ``FENCE_CHECK_LUA``), which replies
``FENCED <key> latest=<n> token=<t>`` when the key holds a newer grant.

Python side::

    key, token = fence_args(resource_id)        # ("", 0) when no WRITE lock is held here
    try:
        script(keys=[...], args=[key, token, ...])
    except redis.ResponseError as exc:
        raise_if_fenced(exc)                     # FencedWriteRejected for FENCED replies
        raise

The fence key is passed in ARGV (not KEYS) because it lives in the resource's hash
slot, not the agent's; in a single Redis that is fine, and the key name is fixed.
"""
from __future__ import annotations

import threading
from contextvars import ContextVar

from ..errors import FencedWriteRejected
from ..scripts import lua_include

__all__ = [
    "FENCE_CHECK_LUA", "FencedWriteRejected", "current_fence", "fence_args", "raise_if_fenced",
]

FENCE_CHECK_LUA = lua_include("fence_check")

# (resource_id, lock_id, fence_key, token) of WRITE/EXCLUSIVE locks taken in this
# context. Immutable tuples: asyncio tasks copy contexts, and a shared mutable list
# would leak one task's locks into another.
_held: ContextVar[tuple[tuple[str, str, str, int], ...]] = ContextVar("piano_fences", default=())

# Locks still held by some coordinator of this process: a lock released from another
# thread (or by shutdown) must stop fencing writes of the context that took it.
_live: set[str] = set()
_live_guard = threading.Lock()


def current_fence(resource_id: str) -> tuple[str, int] | None:
    """(fence key, token) if this context holds a WRITE/EXCLUSIVE lock on the resource.

    The token stays returned after the lease lapsed (the holder may not know yet):
    the write is then refused by the fence check, which is the point.
    """
    for rid, lock_id, key, token in reversed(_held.get()):
        if rid == resource_id and lock_id in _live:
            return key, token
    return None


def fence_args(resource_id: str) -> tuple[str, int]:
    """ARGV pair for the fence check: the current fence, or ("", 0) for unfenced."""
    return current_fence(resource_id) or ("", 0)


def raise_if_fenced(exc: BaseException, what: str = "write", resource_id: str | None = None) -> None:
    """Turn a script's FENCED error reply into :class:`FencedWriteRejected` (the one
    translator of that reply: locks, state, memories and the world all use it);
    anything else is left for the caller. ``what`` names the refused write."""
    message = str(exc)
    if message.startswith("FENCED"):
        on = f"on {resource_id!r}" if resource_id is not None else "on this resource"
        raise FencedWriteRejected(f"{what} refused: a newer lock was granted {on} since ({message})") from exc


def _remember(resource_id: str, lock_id: str, fence_key: str, token: int) -> None:
    with _live_guard:
        _live.add(lock_id)
    live = tuple(e for e in _held.get() if e[1] in _live)
    _held.set(live + ((resource_id, lock_id, fence_key, token),))


def _forget(lock_id: str) -> None:
    with _live_guard:
        _live.discard(lock_id)
