"""Who is waiting: one id per execution context (thread or asyncio task) per process.

Wait-for edges connect owners, not holder names, because two tasks may pass the same
holder id; a lock belongs to the acquisition, and the wait belongs to the context that
blocks on it. Forked children get a new id (the pid is part of the check).
"""
from __future__ import annotations

import os
import socket
import uuid
from contextvars import ContextVar

_owner: ContextVar[tuple[int, str] | None] = ContextVar("piano_lock_owner", default=None)
_HOST = socket.gethostname()


def current_owner() -> str:
    value = _owner.get()
    pid = os.getpid()
    if value is None or value[0] != pid:
        value = (pid, f"{_HOST}:{pid}:{uuid.uuid4().hex[:12]}")
        _owner.set(value)
    return value[1]
