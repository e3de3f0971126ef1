"""LLMClient: the two calls cognitive modules make of a language model.

Every client counts the calls it has in flight, locally and, when given a Redis
connection, in a shared counter, so a dashboard can show "LLM calls in flight" across
all workers (the number that shows whether modules really overlap their waits).
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import Any, Iterator

import redis

from ..keys import Keys


class LLMError(RuntimeError):
    """The model could not answer (HTTP error, malformed reply, …)."""


class LLMClient(ABC):
    def __init__(self, *, connection: redis.Redis | None = None, prefix: str | None = None):
        self.connection = connection
        self.keys = Keys(prefix)
        self._guard = threading.Lock()
        self._in_flight = 0
        self.calls = 0

    @abstractmethod
    def complete(self, prompt: str, **kw: Any) -> str:
        """The model's answer to ``prompt``."""

    @abstractmethod
    def embed(self, text: str) -> list[float]:
        """An embedding vector for ``text``."""

    @property
    def in_flight(self) -> int:
        """Calls of this client now waiting on the model (this process only)."""
        return self._in_flight

    def shared_in_flight(self) -> int | None:
        """Calls in flight across every process sharing the Redis counter (None without one)."""
        if self.connection is None:
            return None
        return int(self.connection.get(self.keys.llm_key("in_flight")) or 0)

    @contextmanager
    def _tracked(self) -> Iterator[None]:
        with self._guard:
            self._in_flight += 1
            self.calls += 1
        shared = self.connection is not None
        if shared:
            pipe = self.connection.pipeline(transaction=False)
            pipe.incr(self.keys.llm_key("in_flight"))
            pipe.incr(self.keys.llm_key("calls"))
            pipe.execute()
        try:
            yield
        finally:
            with self._guard:
                self._in_flight -= 1
            if shared:
                try:
                    self.connection.decr(self.keys.llm_key("in_flight"))
                except redis.RedisError:
                    pass  # a lost decrement only skews a gauge; never fail the call for it
