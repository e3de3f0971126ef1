"""The cluster-wide model-call limiter against a real OpenAI-compatible stub endpoint
(piano_dist.llm.stub_server) and a private redis-server: pacing of RPM and TPM, places
in flight, pushback (Retry-After), retries up to a deadline, and what the limiter's
state in Redis may hold."""
import email.utils
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from support.waiting import wait_until

from piano_dist.keys import Keys
from piano_dist.llm import LLMError, LLMSettings, OpenAICompatibleLLM, add_call_listener, remove_call_listener
from piano_dist.llm.endpoint import Endpoint
from piano_dist.llm.errors import MAX_PAUSE_SECONDS, parse_retry_after
from piano_dist.llm.limiter import EndpointLimiter
from piano_dist.llm.stub_server import StubEndpoint, StubLog


@pytest.fixture
def stubs():
    started = []

    def make(**kw) -> StubEndpoint:
        stub = StubEndpoint(**kw).start()
        started.append(stub)
        return stub

    yield make
    for stub in started:
        stub.stop()


def _client(stub, redis_client, model="m", **settings) -> OpenAICompatibleLLM:
    return OpenAICompatibleLLM(url=stub.url + "/v1", model=model, connection=redis_client,
                               settings=LLMSettings(**settings))


def _calls(llm, n, threads=32, **kw):
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda i: llm.complete(f"question {i}", **kw), range(n)))


class _Records:
    def __init__(self):
        self.items = []
        self._guard = threading.Lock()

    def __call__(self, record):
        with self._guard:
            self.items.append(record)


@pytest.fixture
def records():
    listener = _Records()
    add_call_listener(listener)
    yield listener.items
    remove_call_listener(listener)


# --- settings and Retry-After ------------------------------------------------------------
def test_settings_come_from_the_environment_and_bad_values_name_the_variable():
    s = LLMSettings.from_env({"PIANO_LLM_RPM": "1200", "PIANO_LLM_TPM": "90000", "PIANO_LLM_MAX_IN_FLIGHT": "8",
                              "PIANO_LLM_RETRY_DEADLINE": "30", "PIANO_LLM_CACHE": "1",
                              "PIANO_LLM_PRICE_IN": "0.15", "PIANO_LLM_PRICE_OUT": "0.6"})
    assert (s.rpm, s.tpm, s.max_in_flight, s.retry_deadline, s.cache) == (1200, 90000, 8, 30, True)
    assert s.cost(1000, 2000) == pytest.approx(0.15 + 1.2)
    unset = LLMSettings.from_env({})
    assert not unset.limited and not unset.cache and unset.cost(10, 10) is None
    for name, value in (("PIANO_LLM_RPM", "fast"), ("PIANO_LLM_TPM", "-1"), ("PIANO_LLM_MAX_IN_FLIGHT", "2.5"),
                        ("PIANO_LLM_RETRY_DEADLINE", "0"), ("PIANO_LLM_CACHE", "maybe"),
                        ("PIANO_LLM_PRICE_IN", "nan"), ("PIANO_LLM_RPM", "inf")):
        with pytest.raises(ValueError, match=name):
            LLMSettings.from_env({name: value})


def test_retry_after_in_seconds_milliseconds_or_an_http_date():
    assert parse_retry_after({"Retry-After": "7"}) == 7
    assert parse_retry_after({"retry-after-ms": "250", "Retry-After": "1"}) == 0.25
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    # Read against the reply's own Date, so a skewed local clock does not matter.
    assert parse_retry_after({"Retry-After": date, "Date": email.utils.formatdate(now, usegmt=True)}) \
        == pytest.approx(30, abs=1)
    assert parse_retry_after({"Retry-After": date}, now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({"Retry-After": "-3"}) is None
    assert parse_retry_after({}) is None
    assert parse_retry_after({"Retry-After": "999999"}) == MAX_PAUSE_SECONDS


# --- rates -------------------------------------------------------------------------------
def test_rpm_is_paced_not_spent_as_a_burst(redis_client):
    """At 1,200 RPM no more than 22 calls are let through in any 1 s (Redis time)."""
    limiter = EndpointLimiter(Endpoint("http://pace.example", "m"), LLMSettings(rpm=1200), redis_client, Keys())
    sent = []
    guard = threading.Lock()

    def one(_):
        admission = limiter.admit(10)
        with guard:
            sent.append(admission.sent_ms / 1000.0)

    with ThreadPoolExecutor(48) as pool:
        list(pool.map(one, range(90)))
    assert StubLog.max_in_window(sent, 1.0) <= 22
    # Paced: no two calls closer than the burst allows (2 at once, then one per 50 ms).
    ordered = sorted(sent)
    assert all(b - a >= 0.05 - 0.0015 for a, b in zip(ordered, ordered[2:]))


def test_rpm_measured_at_the_endpoint(stubs, redis_client, records):
    stub = stubs(latency=0.02)
    llm = _client(stub, redis_client, rpm=1200)
    _calls(llm, 70, threads=48)
    arrivals = stub.log.accepted_times()
    assert len(arrivals) == 70
    # 22 in any second on the limiter's clock (above); at the endpoint, allow for up to
    # 100 ms of scheduling delay between a grant and the request's arrival.
    assert StubLog.max_in_window(arrivals, 1.0) <= 24
    assert (len(arrivals) - 5) / (max(arrivals) - min(arrivals)) <= 1200 / 60
    # The wait for the limiter is counted apart from the model's latency.
    waited = [r for r in records if r.limiter_waited]
    assert len(waited) >= 40 and all(r.limiter_wait_seconds > 0 for r in waited)
    assert max(r.model_seconds for r in records) < min(0.5, max(r.limiter_wait_seconds for r in records))
    assert all(r.model_seconds >= 0.02 for r in records)


def test_tpm_paces_tokens_and_overruns_by_at_most_one_reply_per_slot(stubs, redis_client):
    # Tiny prompts, 200-token replies: the size is known only when a reply arrives.
    stub = stubs(completion_tokens=200)
    slots, tpm = 8, 60_000  # 1,000 tokens per second
    llm = _client(stub, redis_client, tpm=tpm)
    _calls(llm, 30, threads=slots)
    served = stub.log.served
    reply = max(tokens for _, tokens in served)
    times = [t for t, _ in served]
    total = sum(tokens for _, tokens in served)
    for window in (1.0, 2.0, 4.0):
        most = max(sum(tokens for t, tokens in served if start <= t < start + window) for start in times)
        # The rate over the window, one second's burst, and one underestimated reply per slot.
        assert most <= tpm / 60 * window + tpm / 60 + slots * reply, (window, most)
    # All of it took at least as long as the budget allows (the limiter did pace it).
    assert max(times) - min(times) >= (total - tpm / 60 - slots * reply) / (tpm / 60)


def test_in_flight_is_what_the_endpoint_sees(stubs, redis_client):
    stub = stubs(latency=0.15)
    llm = _client(stub, redis_client, max_in_flight=5)
    _calls(llm, 40, threads=32)
    assert stub.log.peak_in_flight <= 5
    assert stub.log.peak_in_flight >= 2  # still concurrent
    assert redis_client.zcard(Keys().llm_endpoint(llm.endpoint.id, "inflight")) == 0


def test_a_dead_callers_place_lapses_with_its_lease(redis_client, monkeypatch):
    monkeypatch.setattr("piano_dist.llm.limiter.PLACE_MARGIN_SECONDS", 0.0)  # lease = the 1 s HTTP timeout
    settings = LLMSettings(max_in_flight=1, timeout=1.0)
    limiter = EndpointLimiter(Endpoint("http://lease2.example", "m"), settings, redis_client, Keys())
    limiter.admit(1)
    admission = limiter.admit(1)
    assert admission.waits >= 1 and admission.waited_seconds >= 0.9


def test_garbage_in_the_limiters_keys_does_not_stop_calls(stubs, redis_client):
    stub = stubs()
    llm = _client(stub, redis_client, rpm=600, tpm=100_000, max_in_flight=4)
    keys = Keys()
    redis_client.hset(keys.llm_endpoint(llm.endpoint.id, "limit"),
                      mapping={"rtat": "x", "stat": "{}", "ttat": "nan?", "cavg": "-", "pause": "later"})
    answers = _calls(llm, 3, threads=3)
    assert all(isinstance(a, str) and a for a in answers) and stub.log.count(200) == 3


# --- pushback, retries, deadline -----------------------------------------------------------
def test_429_with_retry_after_pauses_every_caller_until_n_seconds_after_it_was_sent(stubs, redis_client):
    stub = stubs(latency=0.01)
    first = _client(stub, redis_client)
    other = _client(stub, redis_client)  # a second client of the same endpoint: same pause
    stub.fail_next(429, retry_after=2)
    assert first.complete("refused first")
    arrivals = [t for t, _, _ in stub.log.arrivals]
    assert [s for _, _, s in stub.log.arrivals] == [429, 200]
    assert arrivals[1] - arrivals[0] >= 1.9  # the retry waited out Retry-After
    stub.fail_next(429, retry_after=2)
    done = []
    t = threading.Thread(target=lambda: done.append(first.complete("refused again")))
    t.start()
    wait_until(lambda: first.endpoint_status(first.endpoint)["paused_for_seconds"] > 0, timeout=10,
               message="the second refusal to pause the endpoint")
    refused = stub.log.arrivals[-1][0]
    assert stub.log.arrivals[-1][2] == 429
    other.complete("from the other client")
    assert time.monotonic() - refused >= 1.8  # held by the pause the first client's 429 set
    assert other.endpoint_status(other.endpoint)["paused_for_seconds"] == 0
    t.join(10)
    assert done


def test_503_with_an_http_date_pauses_too(stubs, redis_client):
    stub = stubs(retry_after_format="date")
    llm = _client(stub, redis_client)
    stub.fail_next(503, retry_after=2)
    llm.complete("hello")
    arrivals = [t for t, _, _ in stub.log.arrivals]
    assert [s for _, _, s in stub.log.arrivals] == [503, 200]
    assert arrivals[1] - arrivals[0] >= 0.9  # an HTTP date has 1 s resolution


def test_429s_and_5xx_are_retried_until_they_succeed(stubs, redis_client, records):
    stub = stubs()
    llm = _client(stub, redis_client)
    stub.fail_next(500)
    stub.fail_next(429)  # without Retry-After: a local backoff
    stub.fail_next(502)
    assert llm.complete("eventually") == StubEndpoint(seed=0).reply_for(
        "/v1/chat/completions", {"messages": [{"role": "user", "content": "eventually"}]})[0]["choices"][0][
        "message"]["content"]
    (record,) = records
    assert record.requests == 4 and record.rate_limited == 1 and record.error is None
    assert record.retry_wait_seconds > 0


def test_a_persistent_500_fails_after_the_deadline_naming_status_and_endpoint(stubs, redis_client):
    stub = stubs()
    stub.fail_always(500)
    llm = _client(stub, redis_client, retry_deadline=3)
    started = time.monotonic()
    with pytest.raises(LLMError) as failure:
        llm.complete("doomed")
    elapsed = time.monotonic() - started
    arrivals = [t for t, _, _ in stub.log.arrivals]
    assert arrivals[-1] - arrivals[0] >= 1.5  # retried for at least half the deadline
    assert elapsed < 3 + 10
    assert "500" in str(failure.value) and f"{stub.url}/v1/chat/completions" in str(failure.value)


def test_errors_that_another_attempt_cannot_cure_fail_at_once(stubs, redis_client):
    stub = stubs()
    stub.fail_next(401)
    llm = _client(stub, redis_client)
    with pytest.raises(LLMError, match=r"HTTP 401"):
        llm.complete("who am I")
    assert len(stub.log.arrivals) == 1


def test_a_refused_connection_is_retried_until_the_endpoint_is_up(redis_client):
    from piano_dist.embedded import free_port

    port = free_port()
    llm = OpenAICompatibleLLM(url=f"http://127.0.0.1:{port}", model="m", connection=redis_client,
                              settings=LLMSettings(retry_deadline=30))
    answers = []
    caller = threading.Thread(target=lambda: answers.append(llm.complete("anyone there")))
    caller.start()
    wait_until(lambda: int(redis_client.get("piano:llm:in_flight") or 0) == 0 and caller.is_alive(), timeout=5,
               message="the first attempt to fail")
    time.sleep(0.5)  # the behaviour under test: the endpoint comes up while the call retries
    stub = StubEndpoint(port=port).start()
    try:
        caller.join(30)
        assert answers and stub.log.count(200) == 1
    finally:
        stub.stop()


def test_without_redis_the_pushback_still_holds_the_process(stubs):
    stub = stubs()
    llm = OpenAICompatibleLLM(url=stub.url, model="m", settings=LLMSettings())
    stub.fail_next(429, retry_after=1)
    assert llm.complete("alone")
    arrivals = [t for t, _, _ in stub.log.arrivals]
    assert arrivals[1] - arrivals[0] >= 0.9


def test_a_cancelled_task_stops_waiting_for_the_limiter(stubs, redis_client):
    from piano_dist.core.context import TaskContext, reset_current_task, set_current_task
    from piano_dist.llm.limiter import Admission

    stub = stubs()
    llm = _client(stub, redis_client)
    sec, usec = redis_client.time()
    pushed = EndpointLimiter(llm.endpoint, llm.settings, redis_client, Keys())
    pushed.release(Admission("someone", int(sec) * 1000 + int(usec) // 1000, 0, 0), None, None, pause_seconds=60)
    ctx = TaskContext("t1", "mod", "run", 1, "w", None, "agent")
    outcome = []

    def call():
        token = set_current_task(ctx)
        try:
            llm.complete("waiting")
        except LLMError as exc:
            outcome.append(exc)
        finally:
            reset_current_task(token)

    caller = threading.Thread(target=call)
    caller.start()
    wait_until(lambda: llm.endpoint_status(llm.endpoint)["paused_for_seconds"] > 50, message="the pause")
    ctx.cancel_event.set()
    caller.join(5)
    assert not caller.is_alive() and "cancelled" in str(outcome[0])
    assert stub.log.arrivals == []


def test_the_fake_model_is_paced_when_limits_are_set_and_untouched_otherwise(redis_client, records):
    from piano_dist.llm import FakeLLM

    free = FakeLLM(median_latency=0.01, connection=redis_client, settings=LLMSettings())
    free.complete("no limits")
    assert not list(redis_client.scan_iter("piano:llm:{llm:*"))  # no limiter round trips at all
    paced = FakeLLM(median_latency=0.01, connection=redis_client, settings=LLMSettings(rpm=1200))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(paced.complete, [f"dry run {i}" for i in range(8)]))
    dry = records[1:]
    assert sum(r.limiter_waited for r in dry) >= 5
    # The fake's model time is its sampled latency, apart from the limiter's waits.
    assert all(0 < r.model_seconds < 0.2 and r.latency_seconds == r.model_seconds for r in dry)
    assert max(r.limiter_wait_seconds for r in dry) >= 0.2


def test_a_cache_entry_that_is_not_ours_is_a_miss_and_is_replaced(stubs, redis_client):
    from piano_dist.llm.cache import request_digest

    stub = stubs()
    llm = _client(stub, redis_client, cache=True)
    body = {"model": "m", "messages": [{"role": "user", "content": "cached?"}], "temperature": 0}
    key = Keys().llm_cache(request_digest("complete", body))
    redis_client.set(key, b"\x00not json")
    first = llm.complete("cached?", temperature=0)
    second = llm.complete("cached?", temperature=0)
    assert first == second and stub.log.count(200) == 1
    assert redis_client.pttl(key) > 0
