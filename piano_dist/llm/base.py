"""LLMClient: the two calls cognitive modules make of a language model.

Every call goes through one path (:mod:`piano_dist.llm.metering`): the shared response
cache, the endpoint's cluster-wide limiter, retries, and accounting. Each call yields a
:class:`CallRecord` whose ``model_seconds`` (the model's own time: a real endpoint's
measured latency, the fake's sampled one) is kept apart from ``limiter_wait_seconds``
and ``retry_wait_seconds``; :func:`add_call_listener` receives every record in the
calling thread.

Every client also counts the calls it has in flight, locally and, when given a Redis
connection, in a shared counter, so a dashboard can show "LLM calls in flight" across
all workers (the number that shows whether modules really overlap their waits).
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Any, Callable

import redis

from ..core.tally import tally_for
from ..keys import Keys
from .endpoint import Endpoint
from .errors import LLMError
from .metering import Meter, ModelReply, ModelRequest
from .records import CallRecord, add_call_listener, remove_call_listener
from .settings import LLMSettings

__all__ = ["CallRecord", "LLMClient", "LLMError", "ModelReply", "ModelRequest", "add_call_listener",
           "remove_call_listener"]


class LLMClient(ABC):
    # Whether the model can refuse a call for load (429/503): such clients always pass
    # the limiter so that a pushback holds every worker, even with no limits set.
    can_push_back = True

    def __init__(self, *, connection: redis.Redis | None = None, prefix: str | None = None,
                 settings: LLMSettings | None = None, retries: int | None = None):
        self.connection = connection
        self.keys = Keys(prefix)
        self.settings = settings if settings is not None else LLMSettings.from_env()
        self._guard = threading.Lock()
        self._in_flight = 0
        self.calls = 0
        self._meter = Meter(self, retries)

    @abstractmethod
    def complete(self, prompt: str, **kw: Any) -> str:
        """The model's answer to ``prompt``."""

    @abstractmethod
    def embed(self, text: str) -> list[float]:
        """An embedding vector for ``text``."""

    def _call(self, request: ModelRequest, send: Callable[[float], ModelReply]) -> Any:
        """Run one model call through the cache, limiter, retries and accounting.
        ``send(timeout)`` performs one attempt and returns a ModelReply."""
        return self._meter.call(request, send)

    def endpoint_status(self, endpoint: Endpoint) -> dict:
        """Pushback pause left and places in flight at ``endpoint`` (cluster-wide)."""
        limiter = self._meter.limiter(endpoint)
        return limiter.status() if limiter is not None else {}

    @property
    def in_flight(self) -> int:
        """Calls of this client now waiting on the model (this process only)."""
        return self._in_flight

    def shared_in_flight(self) -> int | None:
        """Calls in flight across every process sharing the Redis counter (None without one)."""
        if self.connection is None:
            return None
        return int(self.connection.get(self.keys.llm_key("in_flight")) or 0)

    def _gauge(self, delta: int) -> None:
        with self._guard:
            self._in_flight += delta
        if self.connection is not None:
            # Through the tally: the slots' rises and falls share a round trip (within
            # 20 ms), and a lost one only skews a gauge.
            tally_for(self.connection).incr(self.keys.llm_key("in_flight"), delta)
