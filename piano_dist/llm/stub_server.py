"""A small OpenAI-compatible endpoint that behaves like a rate-limited hosted one.

It answers /v1/chat/completions (with the offline fake's parseable answers and a
``usage`` block) and /v1/embeddings, after a configurable latency, and enforces its own
limit: beyond ``limit`` requests in any ``window`` seconds it answers 429 with
Retry-After, as hosted endpoints do. It records what it saw (arrival times, refusals,
requests open at once, tokens served), so tests and demos can check a client against
the endpoint's own view. Standard library only.

    python -m piano_dist.llm.stub_server --port 8000 --rpm 300 --latency 0.2
"""
from __future__ import annotations

import argparse
import collections
import email.utils
import json
import math
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .endpoint import estimate_message_tokens, estimate_tokens


@dataclass
class StubLog:
    arrivals: list = field(default_factory=list)   # (monotonic time, path, status answered)
    served: list = field(default_factory=list)     # (monotonic time of reply, prompt + completion tokens)
    peak_in_flight: int = 0
    in_flight: int = 0

    def accepted_times(self) -> list[float]:
        return [t for t, _, status in self.arrivals if status == 200]

    def count(self, status: int) -> int:
        return sum(1 for _, _, s in self.arrivals if s == status)

    @staticmethod
    def max_in_window(times: list[float], window: float) -> int:
        """Most events in any window of ``window`` seconds."""
        times = sorted(times)
        best, start = 0, 0
        for end, t in enumerate(times):
            while t - times[start] >= window:
                start += 1
            best = max(best, end - start + 1)
        return best


class StubEndpoint:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, limit: int = 0, window: float = 60.0,
                 latency: float = 0.0, completion_tokens: int | None = None, seed: int = 0,
                 retry_after_format: str = "seconds", send_usage: bool = True):
        """``limit`` requests per ``window`` seconds (0 = no limit); ``completion_tokens``
        reported per reply (None: counted from the answer); ``retry_after_format``:
        "seconds", "date" (an HTTP date) or "none" (429 without Retry-After)."""
        from .fake import FakeLLM
        from .settings import LLMSettings

        self.limit = limit
        self.window = window
        self.latency = latency
        self.completion_tokens = completion_tokens
        self.retry_after_format = retry_after_format
        self.send_usage = send_usage
        self.log = StubLog()
        self._answers = FakeLLM(seed=seed, median_latency=0, settings=LLMSettings())
        self._guard = threading.Lock()
        self._recent: collections.deque = collections.deque()
        self._scripted: collections.deque = collections.deque()  # (status, retry_after) to answer next
        self._always: tuple[int, float | None] | None = None
        self.server = _Server((host, port), _Handler)
        self.server.stub = self
        self._thread: threading.Thread | None = None

    # --- control ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "StubEndpoint":
        self._thread = threading.Thread(target=self.server.serve_forever, name="llm-stub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "StubEndpoint":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def fail_next(self, status: int, retry_after: float | None = None, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``status`` (and Retry-After, if given)."""
        with self._guard:
            self._scripted.extend([(status, retry_after)] * times)

    def fail_always(self, status: int | None, retry_after: float | None = None) -> None:
        with self._guard:
            self._always = None if status is None else (status, retry_after)

    # --- the endpoint's decision ----------------------------------------------------------
    def _admit(self, path: str) -> tuple[int, float | None]:
        now = time.monotonic()
        with self._guard:
            if self._scripted:
                status, retry_after = self._scripted.popleft()
            elif self._always is not None:
                status, retry_after = self._always
            elif self.limit:
                while self._recent and now - self._recent[0] >= self.window:
                    self._recent.popleft()
                if len(self._recent) >= self.limit:
                    status, retry_after = 429, self._recent[0] + self.window - now
                else:
                    self._recent.append(now)
                    status, retry_after = 200, None
            else:
                status, retry_after = 200, None
            self.log.arrivals.append((now, path, status))
            self.log.in_flight += 1
            self.log.peak_in_flight = max(self.log.peak_in_flight, self.log.in_flight)
        return status, retry_after

    def _done(self, tokens: int) -> None:
        with self._guard:
            self.log.in_flight -= 1
            if tokens:
                self.log.served.append((time.monotonic(), tokens))

    def _retry_after_header(self, seconds: float) -> str | None:
        if self.retry_after_format == "none":
            return None
        if self.retry_after_format == "date":
            return email.utils.formatdate(time.time() + math.ceil(seconds), usegmt=True)
        return str(max(1, math.ceil(seconds)))

    def reply_for(self, path: str, body: dict) -> tuple[dict, int]:
        if path == "/v1/embeddings":
            text = body.get("input", "")
            vector = self._answers.embed(text if isinstance(text, str) else json.dumps(text))
            tokens = estimate_tokens(text)
            return {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": vector}],
                    "model": body.get("model"), "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}, tokens
        messages = body.get("messages") or []
        last = messages[-1].get("content", "") if messages and isinstance(messages[-1], dict) else ""
        answer = self._answers.answer(last if isinstance(last, str) else json.dumps(last))
        prompt_tokens = estimate_message_tokens(messages)
        completion_tokens = self.completion_tokens if self.completion_tokens is not None else estimate_tokens(answer)
        reply = {"id": "stub", "object": "chat.completion", "model": body.get("model"),
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                              "finish_reason": "stop"}]}
        if self.send_usage:
            reply["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                              "total_tokens": prompt_tokens + completion_tokens}
        return reply, prompt_tokens + completion_tokens


class _Server(ThreadingHTTPServer):
    # Many clients connect at once; the default listen backlog (5) would drop their SYNs.
    request_queue_size = 1024
    daemon_threads = True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as hosted endpoints do

    def do_POST(self) -> None:
        stub: StubEndpoint = self.server.stub
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        status, retry_after = stub._admit(self.path)
        tokens = 0
        try:
            if status != 200:
                headers = {}
                if retry_after is not None:
                    value = stub._retry_after_header(retry_after)
                    if value is not None:
                        headers["Retry-After"] = value
                payload = {"error": {"message": f"stub answered {status}", "type": "stub"}}
            elif self.path not in ("/v1/chat/completions", "/v1/embeddings"):
                status, headers, payload = 404, {}, {"error": {"message": f"no such path {self.path}"}}
            else:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                if not isinstance(body, dict):
                    status, headers, payload = 400, {}, {"error": {"message": "body is not a JSON object"}}
                else:
                    if stub.latency:
                        time.sleep(stub.latency)
                    payload, tokens = stub.reply_for(self.path, body)
                    headers = {}
        finally:
            stub._done(tokens)  # "in flight" ends as the reply goes out
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 = any free port (the URL is printed)")
    parser.add_argument("--rpm", type=int, default=300, help="requests per minute before 429 (0 = no limit)")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per reply")
    parser.add_argument("--completion-tokens", type=int, default=None)
    args = parser.parse_args(argv)
    stub = StubEndpoint(args.host, args.port, limit=args.rpm, window=60.0, latency=args.latency,
                        completion_tokens=args.completion_tokens)
    print(f"OpenAI-compatible stub at {stub.url}/v1 ({args.rpm or 'no'} requests per minute, "
          f"{args.latency:g} s latency); Ctrl-C stops it", flush=True)
    try:
        stub.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stub.server.server_close()


if __name__ == "__main__":
    main()
