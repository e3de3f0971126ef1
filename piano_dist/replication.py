"""Optional WAIT for replicas after submits and finishes.

Redis replicates asynchronously: a submit or an outcome the master acknowledged may not
have reached a replica when the master dies, and a Sentinel failover then promotes a
replica without it. ``PIANO_REDIS_WAIT_REPLICAS=N`` makes submits and outcome batches
wait (Redis ``WAIT``) until N replicas have them, for at most
``PIANO_REDIS_WAIT_TIMEOUT_MS`` (default 1000). A timeout is logged, not raised: the
write is on the master, and the worker or client goes on. WAIT counts the writes of
the connection it is sent on, so it travels in the same pipeline as the writes.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable

log = logging.getLogger("piano_dist.redis")

_warned = [0.0]
_warn_lock = threading.Lock()


def _int_setting(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    if not raw.isdigit():
        raise ValueError(f"{name} must be a whole number ≥ 0, not {raw!r}")
    return int(raw)


def replicas_to_wait() -> tuple[int, int]:
    """(replicas, timeout in ms) from the environment; (0, …) means no WAIT."""
    return _int_setting("PIANO_REDIS_WAIT_REPLICAS", 0), _int_setting("PIANO_REDIS_WAIT_TIMEOUT_MS", 1000)


def pipelined(connection: Any, fill: Callable[[Any], None], what: str) -> list:
    """Run the commands ``fill`` adds to a non-transactional pipeline, followed by a
    WAIT when replicas are to be waited for; the replies of ``fill``'s commands (errors
    as values, like ``execute(raise_on_error=False)``)."""
    replicas, timeout_ms = replicas_to_wait()
    with connection.pipeline(transaction=False) as pipe:
        fill(pipe)
        if replicas:
            pipe.execute_command("WAIT", replicas, timeout_ms)
        replies = pipe.execute(raise_on_error=False)
    if replicas:
        acked = replies.pop()
        if isinstance(acked, Exception) or int(acked) < replicas:
            _warn(f"{what}: {acked if isinstance(acked, Exception) else int(acked)} of {replicas} replica(s) "
                  f"acknowledged within {timeout_ms} ms; a failover now could lose it")
    return replies


def _warn(message: str) -> None:
    now = time.monotonic()
    with _warn_lock:
        if now - _warned[0] < 10:
            return
        _warned[0] = now
    log.warning(message)
