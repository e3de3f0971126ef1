"""LLM clients: FakeLLM's determinism, latency shape and in-flight counting; the
OpenAI-compatible client against a local stub server."""
import json
import statistics
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from support.waiting import wait_until

from piano_dist.llm import FakeLLM, LLMError, OpenAICompatibleLLM, get_llm
from piano_dist.memory import scoring


def test_fake_answers_are_deterministic_in_seed_and_prompt():
    a, b, c = FakeLLM(seed=1, median_latency=0), FakeLLM(seed=1, median_latency=0), FakeLLM(seed=2, median_latency=0)
    prompts = [f"What does Isabella think about the cafe party number {i}?" for i in range(20)]
    assert [a.complete(p) for p in prompts] == [b.complete(p) for p in prompts]
    assert [a.complete(p) for p in prompts] != [c.complete(p) for p in prompts]
    assert a.embed("coffee at the cafe") == b.embed("coffee at the cafe")


def test_fake_answers_have_parseable_shapes():
    llm = FakeLLM(median_latency=0)
    rating = llm.complete("On the scale of 1 to 10, how poignant is: Klaus greets Maria?")
    assert rating.isdigit() and 1 <= int(rating) <= 10
    listed = llm.complete("List 4 steps to achieve this goal: open the cafe").splitlines()
    assert [line.split(".")[0] for line in listed] == ["1", "2", "3", "4"]
    # Embeddings: texts sharing words are closer than texts that share none.
    related = scoring.cosine(llm.embed("coffee at the cafe"), llm.embed("the cafe sells coffee"))
    unrelated = scoring.cosine(llm.embed("coffee at the cafe"), llm.embed("painting by the river"))
    assert related > 0.5 and related > unrelated


def test_fake_latency_is_lognormal_around_the_median():
    llm = FakeLLM(seed=3, median_latency=0.05, sigma=0.5)
    samples = [llm.sample_latency() for _ in range(4000)]
    assert 0.045 < statistics.median(samples) < 0.055
    assert statistics.mean(samples) > statistics.median(samples)  # right-skewed: a long tail
    assert min(samples) > 0
    capped = FakeLLM(seed=3, median_latency=0.05, sigma=2.0, max_latency=0.2)
    assert max(capped.sample_latency() for _ in range(500)) <= 0.2


def test_fake_calls_sleep_and_count_in_flight(redis_client):
    llm = FakeLLM(seed=0, median_latency=0.5, sigma=0.01, connection=redis_client)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(llm.complete, f"prompt {i}") for i in range(4)]
        # The gauge rises while the calls sleep, in Redis as locally …
        wait_until(lambda: llm.shared_in_flight() >= 2, timeout=5, message="calls in flight")
        for f in futures:
            f.result()
    # … and is back to zero once they are done.
    assert llm.shared_in_flight() == 0 and llm.in_flight == 0
    assert int(redis_client.get("piano:llm:calls")) == 4


def test_get_llm_follows_the_environment(monkeypatch):
    monkeypatch.delenv("PIANO_LLM", raising=False)
    assert isinstance(get_llm(), FakeLLM)
    monkeypatch.setenv("PIANO_LLM", "openai")
    monkeypatch.setenv("PIANO_LLM_URL", "http://127.0.0.1:9/v1")
    client = get_llm()
    assert isinstance(client, OpenAICompatibleLLM) and client.base_url == "http://127.0.0.1:9"
    monkeypatch.setenv("PIANO_LLM", "nonsense")
    with pytest.raises(ValueError):
        get_llm()


class _Stub(BaseHTTPRequestHandler):
    requests: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append((self.path, self.headers.get("Authorization"), body))
        if self.path == "/v1/chat/completions":
            text = body["messages"][0]["content"]
            if text == "fail":
                self.send_response(400)
                self.end_headers()
                self.wfile.write(b'{"error": "bad prompt"}')
                return
            reply = {"choices": [{"message": {"role": "assistant", "content": f"echo: {text}"}}]}
        elif self.path == "/v1/embeddings":
            reply = {"data": [{"embedding": [0.1, 0.2, 0.3]}]}
        else:
            self.send_response(404)
            self.end_headers()
            return
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def stub_server():
    _Stub.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_openai_client_against_a_local_stub(stub_server):
    llm = OpenAICompatibleLLM(url=stub_server + "/v1", model="tiny", api_key="sk-test", retries=0)
    assert llm.complete("hello", temperature=0) == "echo: hello"
    assert llm.embed("hello") == [0.1, 0.2, 0.3]
    (path, auth, body), (epath, _, ebody) = _Stub.requests
    assert path == "/v1/chat/completions" and auth == "Bearer sk-test"
    assert body == {"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "temperature": 0}
    assert epath == "/v1/embeddings" and ebody == {"model": "tiny", "input": "hello"}
    with pytest.raises(LLMError, match="HTTP 400"):
        llm.complete("fail")
    assert "sk-test" not in repr(llm)
