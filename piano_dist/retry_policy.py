"""The one retry policy for every Redis call piano-dist makes.

Every client built by :func:`piano_dist.connection.get_connection` carries a
:class:`RedisRetry`, so queue scripts, state, memory, locks, the world, model-call
accounting, RQ's own bookkeeping and the CLI all ride out the same faults the same way:
a lost connection (Redis restarting, a failover, a dropped socket) and the replies
Redis gives while it cannot serve a command yet — ``BUSY`` (a script is running),
``LOADING`` (reading its AOF), ``OOM``, ``READONLY`` (we reached a replica),
``TRYAGAIN``, ``MASTERDOWN``. They are retried with exponential backoff until a
deadline (``PIANO_REDIS_RETRY_SECONDS``, default 30 s from the call's first attempt);
then the last error is raised.

What a retry can repeat. A transient *reply* means Redis did not run the command, so
repeating it is always safe. A lost *connection* is different: the command may have
run and only its reply been lost, and the retry runs it again. Each caller of a
non-idempotent command says how it copes (docs/scaling.md lists them): the task
scripts and lock scripts detect their own repeat; the rest are at-least-once.

Pipelines are retried as a whole on a lost connection (as redis-py does); a transient
reply to one command of a non-transactional pipeline is *not* retried here (redis-py
would re-send every command of the pipeline, applying the others twice): callers that
must not lose such a command (the worker's outcome batches) retry the failed entries
themselves.

redis-py wraps its own connect in the same retry object as the command that needs the
connection; the deadline belongs to the outermost call, so nesting does not multiply it.
"""
from __future__ import annotations

import copy
import logging
import math
import os
import re
import socket
import ssl
import threading
import time
from typing import Any, Callable, TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import (AuthenticationError, AuthorizationError, BusyLoadingError, MaxConnectionsError,
                              OutOfMemoryError, ReadOnlyError, ResponseError, TryAgainError)
from redis.retry import Retry

try:  # redis-py ≥ 4.1
    from redis.exceptions import MasterDownError
except ImportError:  # pragma: no cover
    MasterDownError = ()  # type: ignore[assignment]

log = logging.getLogger("piano_dist.redis")

T = TypeVar("T")

DEFAULT_DEADLINE = 30.0
#: Replies Redis gives without running the command, while it cannot serve it yet.
TRANSIENT_REPLIES = ("BUSY", "LOADING", "OOM", "READONLY", "TRYAGAIN", "MASTERDOWN")
_SCRIPT_ERROR = re.compile(r"^Error running script .*?@user_script: ?\d+: -([A-Z]+)\b", re.S)
_TRANSIENT_CLASSES: tuple = (OutOfMemoryError, ReadOnlyError, TryAgainError, BusyLoadingError) + (
    (MasterDownError,) if MasterDownError else ())


def repeat_window() -> int:
    """Whole seconds within which a call may be sent again after its reply was lost: a
    reply is given up after the socket timeout, then the call retried until
    ``retry_deadline``. What tells a repeat from a new call must stay at least this long."""
    from .connection import SOCKET_TIMEOUT

    return math.ceil(SOCKET_TIMEOUT + retry_deadline())


def retry_deadline() -> float:
    """Seconds a Redis call keeps retrying (``PIANO_REDIS_RETRY_SECONDS``, default 30)."""
    raw = os.environ.get("PIANO_REDIS_RETRY_SECONDS")
    if raw is None or raw == "":
        return DEFAULT_DEADLINE
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"PIANO_REDIS_RETRY_SECONDS must be a number of seconds, not {raw!r}") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"PIANO_REDIS_RETRY_SECONDS must be a finite number ≥ 0, not {raw!r}")
    return value


def transient_reply(error: BaseException) -> str | None:
    """The code of a reply Redis gave without running the command, else None.

    A reply annotated by a pipeline (``Command # n (…) of pipeline caused error``) is
    not counted: retrying it would re-send the whole pipeline.
    """
    if not isinstance(error, (ResponseError, BusyLoadingError)):
        return None
    text = str(error.args[0]) if error.args else ""
    if "of pipeline caused error" in text:
        return None
    code = getattr(error, "status_code", None)
    if code is None:
        code = text.split(" ", 1)[0]
    if code in TRANSIENT_REPLIES:
        return code
    # Redis 6 and 7.0 wrap what a script's redis.call() got: "Error running script (call to
    # f_…): @user_script:1: @user_script: 1: -OOM command not allowed …". Redis refuses
    # only a script's first write (OOM, READONLY), so such a script changed nothing.
    wrapped = _SCRIPT_ERROR.search(text)
    if wrapped and wrapped.group(1) in TRANSIENT_REPLIES:
        return wrapped.group(1)
    # redis-py strips the code from the message of the replies it maps to a class.
    if isinstance(error, _TRANSIENT_CLASSES):
        return type(error).__name__
    return None


def is_transient(error: BaseException) -> bool:
    """True when a later attempt of the same call may succeed: a lost or refused
    connection, a timeout, or a transient reply. Wrong credentials, missing rights, a
    certificate that does not verify and a client-side pool limit are not."""
    if isinstance(error, (AuthenticationError, AuthorizationError, MaxConnectionsError)):
        return False
    if isinstance(error, (redis.ConnectionError, redis.TimeoutError, socket.timeout)):
        return not isinstance(error.__cause__ or error.__context__, ssl.SSLCertVerificationError)
    return transient_reply(error) is not None


class _OutageLog:
    """One warning when calls start failing and one line when they succeed again,
    per process, however many threads are retrying."""

    def __init__(self, quiet_for: float = 10.0):
        self._lock = threading.Lock()
        self._since: float | None = None
        self._last_warned = 0.0
        self._quiet_for = quiet_for

    def failing(self, error: BaseException, deadline: float) -> None:
        now = time.monotonic()
        with self._lock:
            if self._since is None:
                self._since = now
            if now - self._last_warned < self._quiet_for:
                return
            self._last_warned = now
        log.warning("Redis call failed (%s: %s); retrying with backoff for up to %.0f s",
                    type(error).__name__, error, deadline)

    def succeeded(self) -> None:
        if self._since is None:  # the common case: read without the lock
            return
        with self._lock:
            since, self._since = self._since, None
        if since is not None:
            log.warning("Redis calls succeed again (after %.1f s)", time.monotonic() - since)


OUTAGES = _OutageLog()


class RedisRetry(Retry):
    """redis-py's ``Retry`` with ``ExponentialBackoff``, bounded by a deadline instead of
    a count, retrying what :func:`is_transient` accepts.

    The deadline of the call in progress is kept per thread: redis-py copies the retry
    object into every connection, but ``set_retry`` hands one object to many.
    """

    def __init__(self, deadline: float | None = None, backoff: Any = None):
        super().__init__(backoff or ExponentialBackoff(cap=2.0, base=0.05), retries=-1,
                         supported_errors=(redis.ConnectionError, redis.TimeoutError, socket.timeout,
                                           ResponseError))
        self.deadline = retry_deadline() if deadline is None else float(deadline)
        self._call = threading.local()  # until: the outermost call's deadline; retried: whether it retried

    def __deepcopy__(self, memo: dict) -> "RedisRetry":
        return RedisRetry(self.deadline, copy.deepcopy(self._backoff, memo))

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, RedisRetry):
            return NotImplemented
        return self.deadline == other.deadline and self._backoff == other._backoff

    __hash__ = Retry.__hash__

    def call_with_retry(self, do: Callable[[], T], fail: Callable, is_retryable: Callable | None = None,
                        with_failure_count: bool = False) -> T:
        call = self._call
        outermost = getattr(call, "until", None) is None
        if outermost:
            call.until = time.monotonic() + self.deadline
            call.retried = False
            self._backoff.reset()
        failures = 0
        try:
            while True:
                try:
                    result = do()
                except self._supported_errors as error:
                    connection_level = isinstance(error, (redis.ConnectionError, redis.TimeoutError,
                                                          socket.timeout))
                    retry = is_transient(error) and (is_retryable is None or is_retryable(error))
                    if not retry and not connection_level:
                        raise  # an ordinary error reply: the connection is fine, keep it
                    failures += 1
                    # The failure handler disconnects, so the next attempt starts clean.
                    fail(error, failures) if with_failure_count else fail(error)
                    wait = self._backoff.compute(failures)
                    if not retry or time.monotonic() + wait > call.until:
                        raise
                    call.retried = True
                    OUTAGES.failing(error, self.deadline)
                    time.sleep(wait)
                else:
                    if outermost and call.retried:
                        OUTAGES.succeeded()
                    return result
        finally:
            if outermost:
                call.until = None

