"""CallRecord: what one model call cost and how its time was spent.

Every call made through an LLMClient produces one, whether answered by the endpoint,
the cache or the offline fake, and whether it succeeded or not. The model's own time
(``model_seconds``) is kept apart from the time spent waiting for the cluster's limiter
or between retries, so reports can compare a run against the model's latencies alone.
Listeners registered with :func:`add_call_listener` receive each record in the thread
that made the call (so ``piano_dist.current_task()`` is the calling task there).
"""
from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass
from typing import Callable

log = logging.getLogger("piano_dist.llm")


@dataclass
class CallRecord:
    kind: str                         # "complete" or "embed"
    endpoint: str                     # "URL model" (the fake: "fake://seed/N fake")
    endpoint_id: str
    module: str | None = None         # the running task's module, None outside a task
    agent: str | None = None          # the task's agent (its spec's, else its module's)
    task_id: str | None = None
    model_seconds: float = 0.0        # time in the model: every attempt, send to reply
    latency_seconds: float | None = None  # the answered attempt's (None: no answer from the model)
    limiter_wait_seconds: float = 0.0  # waiting for rate slots, in-flight places, pushback pauses
    limiter_waited: bool = False      # the limiter held this call back at least once
    retry_wait_seconds: float = 0.0   # backoff sleeps between failed attempts
    requests: int = 0                 # attempts sent to the model
    rate_limited: int = 0             # 429 replies among them
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None         # None unless PIANO_LLM_PRICE_IN/OUT are set
    cache_hit: bool = False
    error: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


_listeners: list[Callable[[CallRecord], None]] = []
_listeners_guard = threading.Lock()


def add_call_listener(listener: Callable[[CallRecord], None]) -> None:
    """Call ``listener(record)`` after every model call in this process."""
    with _listeners_guard:
        _listeners.append(listener)


def remove_call_listener(listener: Callable[[CallRecord], None]) -> None:
    with _listeners_guard:
        if listener in _listeners:
            _listeners.remove(listener)


def notify_listeners(record: CallRecord) -> None:
    with _listeners_guard:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(record)
        except Exception:  # a listener's bug must not fail the model call
            log.exception("LLM call listener %r failed", listener)
