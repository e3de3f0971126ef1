"""The cluster-wide limiter of one endpoint (URL + model), shared through Redis.

``admit()`` returns once the call may be sent, having waited for a rate slot, an
in-flight place or the end of a pushback pause; ``release()`` ends the call: it gives
the place back, corrects the token reservation and, after a 429/503 with Retry-After,
pauses every worker's calls to the endpoint. Without Redis only the pause is kept,
per process.
"""
from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable

import redis

from ..keys import Keys
from ..scripts import ScriptSet
from .endpoint import Endpoint
from .errors import LLMError
from .settings import LLMSettings

log = logging.getLogger("piano_dist.llm")

# How long a sent call may keep its in-flight place beyond its HTTP timeout, should its
# worker die holding it.
PLACE_MARGIN_SECONDS = 30.0
# A waiter for an in-flight place wakes on a release; this bounds a wake-up that was lost.
FULL_WAIT_SECONDS = 1.0


@dataclass
class Admission:
    holder: str
    sent_ms: int              # Redis time the call was let through (pushback counts from it)
    reserved_tokens: float    # what the limiter booked for it (corrected on release)
    waited_seconds: float     # time spent waiting for the limiter
    waits: int = 0            # answers that held the call back


class EndpointLimiter:
    def __init__(self, endpoint: Endpoint, settings: LLMSettings, connection: redis.Redis | None,
                 keys: Keys):
        self.endpoint = endpoint
        self.settings = settings
        self.connection = connection
        self.keys = keys
        self._scripts = ScriptSet(connection) if connection is not None else None
        self._announced = False

    # --- keys -----------------------------------------------------------------------
    def _key(self, part: str) -> str:
        return self.keys.llm_endpoint(self.endpoint.id, part)

    @property
    def place_lease_ms(self) -> int:
        return int((self.settings.timeout + PLACE_MARGIN_SECONDS) * 1000)

    def _announce(self) -> None:
        """Name the endpoint in the registry once per process, so the CLI can show it."""
        if self._announced or self.connection is None:
            return
        s = self.settings
        self.connection.hset(self.keys.llm_endpoints, self.endpoint.id, json.dumps(
            {"url": self.endpoint.url, "model": self.endpoint.model, "rpm": s.rpm, "tpm": s.tpm,
             "max_in_flight": s.max_in_flight}))
        self._announced = True

    # --- admission ------------------------------------------------------------------
    def admit(self, prompt_tokens: int, max_completion: int = 0,
              cancelled: Callable[[], bool] = lambda: False) -> Admission:
        started = time.monotonic()
        if self.connection is None:
            return self._admit_locally(started, cancelled)
        self._announce()
        s = self.settings
        holder = uuid.uuid4().hex
        ticket = "0"
        reserved = 0.0
        waits = 0
        while True:
            status, wait_ms, booked, now_ms, ticket = self._scripts.llm_acquire(
                keys=[self._key("limit"), self._key("inflight")],
                args=[holder, int(prompt_tokens), int(max_completion), s.rpm, s.tpm, s.max_in_flight,
                      self.place_lease_ms, ticket])
            status = status.decode() if isinstance(status, bytes) else str(status)
            ticket = ticket.decode() if isinstance(ticket, bytes) else str(ticket)
            reserved += float(booked)
            if status == "go":
                return Admission(holder, int(now_ms), reserved, time.monotonic() - started, waits)
            waits += 1
            if cancelled():
                self._forget(holder, reserved)
                raise LLMError(f"cancelled while waiting for the limiter of {self.endpoint.label}")
            if status == "full":
                self.connection.blpop([self._key("wake")], timeout=FULL_WAIT_SECONDS)
            else:
                _sleep(int(wait_ms) / 1000.0, cancelled)  # exact: a reserved slot, a pause's end

    def _forget(self, holder: str, reserved: float) -> None:
        try:
            self.release(Admission(holder, 0, reserved, 0.0), used_tokens=0, completion_tokens=None)
        except redis.RedisError:
            pass  # the place lapses with its lease

    def release(self, admission: Admission, used_tokens: int | None, completion_tokens: int | None,
                pause_seconds: float | None = None) -> None:
        """End an admitted call. ``used_tokens``: prompt + completion of the reply (None:
        keep the reservation as it was). ``pause_seconds``: the endpoint's Retry-After."""
        pause_until = 0
        if pause_seconds is not None and pause_seconds > 0:
            pause_until = admission.sent_ms + math.ceil(pause_seconds * 1000)
        if self.connection is None:
            if pause_until:
                _local_pause(self.endpoint.id, pause_seconds)
            return
        s = self.settings
        if not (s.max_in_flight or s.tpm or pause_until):
            return
        correction = 0 if used_tokens is None else used_tokens - admission.reserved_tokens
        self._scripts.llm_release(
            keys=[self._key("limit"), self._key("inflight"), self._key("wake")],
            args=[admission.holder, correction, s.tpm,
                  -1 if completion_tokens is None else int(completion_tokens), pause_until, s.max_in_flight])

    def _admit_locally(self, started: float, cancelled: Callable[[], bool]) -> Admission:
        waits = 0
        while True:
            remaining = _local_pause_left(self.endpoint.id)
            if remaining <= 0:
                return Admission(uuid.uuid4().hex, int(time.time() * 1000), 0.0, time.monotonic() - started,
                                 waits)
            waits += 1
            if cancelled():
                raise LLMError(f"cancelled while waiting for {self.endpoint.label} to accept calls again")
            _sleep(remaining, cancelled)

    # --- status (for the CLI) ---------------------------------------------------------
    def status(self) -> dict:
        if self.connection is None:
            return {"paused_for_seconds": round(max(0.0, _local_pause_left(self.endpoint.id)), 3)}
        return endpoint_status(self.connection, self.keys, self.endpoint.id)


def endpoint_status(connection: redis.Redis, keys: Keys, endpoint_id: str) -> dict:
    """Pause left and places taken now at one endpoint (values from Redis, checked)."""
    sec, usec = connection.time()
    now_ms = int(sec) * 1000 + int(usec) / 1000
    pause = connection.hget(keys.llm_endpoint(endpoint_id, "limit"), "pause")
    try:
        pause_ms = float(pause) if pause is not None else 0.0
    except ValueError:
        pause_ms = 0.0
    in_flight = connection.zcount(keys.llm_endpoint(endpoint_id, "inflight"), now_ms, "+inf")
    return {"paused_for_seconds": round(max(0.0, pause_ms - now_ms) / 1000, 3), "in_flight": int(in_flight)}


def _sleep(seconds: float, cancelled: Callable[[], bool]) -> None:
    """Sleep, noticing a cancelled task within a second."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or cancelled():
            return
        time.sleep(min(left, 1.0))


# Without Redis the endpoint's pushback still holds every caller in this process.
_pauses: dict[str, float] = {}
_pauses_guard = threading.Lock()


def _local_pause(endpoint_id: str, seconds: float) -> None:
    with _pauses_guard:
        _pauses[endpoint_id] = max(_pauses.get(endpoint_id, 0.0), time.monotonic() + seconds)


def _local_pause_left(endpoint_id: str) -> float:
    with _pauses_guard:
        return _pauses.get(endpoint_id, 0.0) - time.monotonic()
