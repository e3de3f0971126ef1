"""Who is waiting: one id per execution context (thread or asyncio task) per process.

Wait-for edges connect owners, not holder names, because two tasks may pass the same
holder id; a lock belongs to the acquisition, and the wait belongs to the context that
blocks on it. The id is kept in a ContextVar, but contexts are copied into new asyncio
tasks and into ``asyncio.to_thread`` / executor threads, so a copied id is only used by
the thread and asyncio task it was made in: elsewhere a new one is made. (A child task
that inherited its parent's id and waited for its parent's lock looked like a context
waiting for itself, a deadlock.) Forked children get a new id too (the pid is checked).
"""
from __future__ import annotations

import asyncio
import os
import socket
import threading
import uuid
from contextvars import ContextVar

# (pid, thread id, asyncio task or None, owner id)
_owner: ContextVar[tuple | None] = ContextVar("piano_lock_owner", default=None)
_HOST = socket.gethostname()


def _running_task():
    try:
        return asyncio.current_task()
    except RuntimeError:  # no event loop running in this thread
        return None


def current_owner() -> str:
    value = _owner.get()
    pid, thread, task = os.getpid(), threading.get_ident(), _running_task()
    if value is None or value[0] != pid or value[1] != thread or value[2] is not task:
        value = (pid, thread, task, f"{_HOST}:{pid}:{uuid.uuid4().hex[:12]}")
        _owner.set(value)
    return value[3]
