"""The path of every model call: cache → cluster limiter → model → retries → accounting.

A call is answered from the shared cache when it may be; otherwise it waits for the
endpoint's limiter, is sent, and is retried on transient failures with jittered
exponential backoff (redis-py's ``Retry`` and ``EqualJitterBackoff``) until
PIANO_LLM_RETRY_DEADLINE has passed since its first failure. A 429/503 with Retry-After
pauses every worker's calls to the endpoint through the limiter. Whatever happens, one
CallRecord goes to the accounting in Redis and to the call listeners.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import redis
from redis.backoff import AbstractBackoff, EqualJitterBackoff
from redis.retry import Retry

from ..core.context import current_task, note_model_call, waiting
from ..core.tally import tally_for
from .accounting import Accounting
from .cache import ResponseCache, cacheable, cached_value, request_digest
from .endpoint import Endpoint
from .errors import EndpointError, LLMError, TransientEndpointError
from .limiter import EndpointLimiter
from .records import CallRecord, notify_listeners

if TYPE_CHECKING:
    from .base import LLMClient

log = logging.getLogger("piano_dist.llm")

BACKOFF_BASE_SECONDS = 0.25
BACKOFF_CAP_SECONDS = 8.0


@dataclass
class ModelRequest:
    kind: str             # "complete" or "embed"
    endpoint: Endpoint
    body: dict            # what the model is asked (model, messages, parameters): the cache key
    prompt_tokens: int    # estimated from the text until the reply says
    max_completion: int = 0


@dataclass
class ModelReply:
    value: Any                      # the answer: text, or an embedding
    prompt_tokens: int
    completion_tokens: int
    model_seconds: float | None = None  # the model's own time, when known better than a clock


class _PushbackAwareBackoff(AbstractBackoff):
    """Jittered exponential backoff over the failures that were not pushback. After a
    429/503 with Retry-After there is no sleep here: the limiter already holds the call
    (and every other) for as long as the endpoint asked."""

    def __init__(self, deadline: float):
        cap = min(BACKOFF_CAP_SECONDS, max(BACKOFF_BASE_SECONDS, deadline / 4))
        self.inner = EqualJitterBackoff(cap=cap, base=BACKOFF_BASE_SECONDS)
        self.failures = 0
        self.pushed_back = False

    def reset(self) -> None:
        self.failures = 0
        self.pushed_back = False

    def saw(self, error: Exception) -> None:
        self.pushed_back = isinstance(error, EndpointError) and error.pushback is not None
        if not self.pushed_back:
            self.failures += 1

    def compute(self, failures: int) -> float:
        return 0.0 if self.pushed_back else self.inner.compute(self.failures)


def retry_policy(deadline: float, retries: int | None) -> tuple[Retry, _PushbackAwareBackoff]:
    """A call's retry policy: transient endpoint errors only, ``retries`` (None = no count
    limit) by Retry; the deadline is enforced by the failure handler."""
    backoff = _PushbackAwareBackoff(deadline)
    return Retry(backoff, -1 if retries is None else retries, supported_errors=(TransientEndpointError,)), backoff


class Meter:
    def __init__(self, client: "LLMClient", retries: int | None = None):
        self.client = client
        self.settings = client.settings
        self.retries = retries
        connection = client.connection
        self.accounting = Accounting(connection, client.keys) if connection is not None else None
        self.cache = (ResponseCache(connection, client.keys, self.settings.cache_ttl)
                      if connection is not None and self.settings.cache else None)
        self._limiters: dict[str, EndpointLimiter] = {}

    def limiter(self, endpoint: Endpoint) -> EndpointLimiter | None:
        """None when nothing is to be limited: no limits set and an endpoint that never
        pushes back (the offline fake)."""
        if not (self.settings.limited or self.client.can_push_back):
            return None
        limiter = self._limiters.get(endpoint.id)
        if limiter is None:
            limiter = EndpointLimiter(endpoint, self.settings, self.client.connection, self.client.keys)
            self._limiters[endpoint.id] = limiter
        return limiter

    # --- one call ---------------------------------------------------------------------
    def call(self, request: ModelRequest, send: Callable[[float], ModelReply]) -> Any:
        ctx = current_task()
        rec = CallRecord(request.kind, request.endpoint.label, request.endpoint.id,
                         module=ctx.module_name if ctx else None, agent=ctx.agent_id if ctx else None,
                         task_id=ctx.task_id if ctx else None)
        gauge = _Gauge(self.client)
        try:
            digest = None
            if self.cache is not None and cacheable(request.kind, request.body):
                digest = request_digest(request.kind, request.body)
                value = cached_value(request.kind, self.cache.get(digest))
                if value is not None:
                    rec.cache_hit = True
                    return value
            with waiting():
                reply = self._send(request, send, rec, gauge, ctx)
            rec.prompt_tokens, rec.completion_tokens = reply.prompt_tokens, reply.completion_tokens
            rec.cost = self.settings.cost(reply.prompt_tokens, reply.completion_tokens)
            if digest is not None:
                self.cache.put(digest, {"value": reply.value, "usage": {
                    "prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens}})
            return reply.value
        except BaseException as exc:
            rec.error = f"{type(exc).__name__}: {exc}"[:500]
            raise
        finally:
            self._finish(rec, gauge)

    def _send(self, request: ModelRequest, send: Callable[[float], ModelReply], rec: CallRecord,
              gauge: "_Gauge", ctx) -> ModelReply:
        limiter = self.limiter(request.endpoint)
        deadline_seconds = self.settings.retry_deadline
        cancelled = (lambda: ctx.cancelled) if ctx is not None else (lambda: False)
        failures = {"first": None, "last_end": None}

        def attempt() -> ModelReply:
            now = time.monotonic()
            if failures["last_end"] is not None:
                rec.retry_wait_seconds += now - failures["last_end"]
            timeout = self.settings.timeout
            if failures["first"] is not None:  # a retry never outlasts the deadline by much
                timeout = min(timeout, max(1.0, failures["first"] + deadline_seconds - now))
            admission = None
            if limiter is not None:
                admission = limiter.admit(request.prompt_tokens, request.max_completion, cancelled)
                rec.limiter_wait_seconds += admission.waited_seconds
                rec.limiter_waited = rec.limiter_waited or admission.waits > 0
            rec.requests += 1
            started = time.monotonic()
            gauge.rise()
            try:
                reply = send(timeout)
            except BaseException as exc:
                gauge.fall()
                rec.model_seconds += time.monotonic() - started
                pushback = exc.pushback if isinstance(exc, EndpointError) else None
                if isinstance(exc, EndpointError) and exc.status == 429:
                    rec.rate_limited += 1
                if admission is not None:
                    self._release(limiter, admission, None, None, pushback)
                failures["last_end"] = time.monotonic()
                raise
            gauge.settle_later()
            model_seconds = reply.model_seconds if reply.model_seconds is not None else time.monotonic() - started
            rec.model_seconds += model_seconds
            rec.latency_seconds = model_seconds
            if admission is not None:
                self._release(limiter, admission, reply.prompt_tokens + reply.completion_tokens,
                              reply.completion_tokens, None)
            return reply

        retry, backoff = retry_policy(deadline_seconds, self.retries)

        def on_failure(error: Exception, count: int) -> None:
            backoff.saw(error)
            now = time.monotonic()
            if failures["first"] is None:
                failures["first"] = now
            spent = now - failures["first"]
            if cancelled():
                raise LLMError(f"cancelled while retrying: {error}") from error
            pushback = error.pushback if isinstance(error, EndpointError) else None
            if spent >= deadline_seconds or (pushback is not None and spent + pushback > deadline_seconds):
                raise LLMError(f"gave up after {count} failed attempt(s) in {spent:.1f} s "
                               f"(PIANO_LLM_RETRY_DEADLINE={deadline_seconds:g}): {error}") from error
            log.debug("model call failed (%s); attempt %d", error, count + 1)

        return retry.call_with_retry(attempt, on_failure, with_failure_count=True)

    def _defer_to_task(self, rec: CallRecord) -> bool:
        """Leave the call's accounting to the end of the running task, summed with its
        other calls (planning makes two, reflection several); False outside a task.
        At the end the sums join the tally, which the worker's finisher sends ahead of
        the task's outcome (or, on another connection, which is sent there and then)."""
        ctx = current_task()
        if ctx is None or ctx.end_hooks is None:
            return False
        pending = ctx.end_state.get(self)
        if pending is None:
            pending = ctx.end_state[self] = []
            accounting, connection = self.accounting, self.client.connection

            def settle() -> None:
                tally = tally_for(connection)
                accounting.add(pending, tally)
                if ctx.outcome_tally is not tally:
                    tally.flush()

            ctx.end_hooks.append(settle)
        pending.append(rec)
        return True

    def _release(self, limiter: EndpointLimiter, admission, used, completion, pause) -> None:
        try:
            limiter.release(admission, used, completion, pause)
        except redis.RedisError as exc:  # the place lapses with its lease; the call's answer stands
            log.warning("LLM limiter release failed (%s)", exc)

    def _finish(self, rec: CallRecord, gauge: "_Gauge") -> None:
        client = self.client
        with client._guard:
            client.calls += 1
        if client.connection is not None:
            tally = tally_for(client.connection)
            tally.incr(client.keys.llm_key("calls"), 1)
            gauge.settle(tally)
            if self.accounting is not None and not self._defer_to_task(rec):
                self.accounting.add([rec], tally)
                tally.flush()  # outside a task: in Redis by the time the call returns
        else:
            gauge.settle(None)
        if rec.model_seconds:
            # The running task's model time (what the demo's oracle is built from): one
            # span ending now, as long as the model's own time in this call.
            now = time.monotonic()
            note_model_call(now - rec.model_seconds, now)
        notify_listeners(rec)


class _Gauge:
    """A call's share of the in-flight gauge (local, and in Redis through the tally).
    The last attempt's decrement is counted locally at once and in Redis with the
    call's other counters."""

    def __init__(self, client: "LLMClient"):
        self.client = client
        self.pending = False

    def rise(self) -> None:
        self.client._gauge(+1)

    def fall(self) -> None:
        self.client._gauge(-1)

    def settle_later(self) -> None:
        with self.client._guard:
            self.client._in_flight -= 1
        self.pending = True

    def settle(self, tally) -> None:
        if self.pending and tally is not None:
            tally.incr(self.client.keys.llm_key("in_flight"), -1)
        self.pending = False
