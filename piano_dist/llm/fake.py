"""FakeLLM: an offline stand-in with a real model's shape of latency.

Answers are deterministic in (seed, prompt), so a run replays exactly; latency is
lognormal (median ``median_latency``, log-sd ``sigma``) like real API calls, whose long
tail is what concurrency hides. A few prompt shapes get answers modules can parse:
"... on a scale of 1 to 10 ..." → a digit, "list N ..." → N numbered lines; anything
else → a short sentence made from the prompt's own words.
"""
from __future__ import annotations

import hashlib
import math
import random
import re
import threading
import time
from typing import Any

import redis

from .base import LLMClient, ModelReply, ModelRequest
from .endpoint import Endpoint, estimate_tokens
from .settings import LLMSettings

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{2,}")
_STOP = frozenset(
    "the and for with that this from what which when where who how are was were will would "
    "could should have has had about into your their them they there then than some more most "
    "list give answer write rate scale each one two three four five".split())
_SCALE = re.compile(r"scale of 1 to 10|from 1 to 10|1-10", re.IGNORECASE)
_LIST = re.compile(r"\blist (\d{1,2})\b", re.IGNORECASE)
_TOKEN = re.compile(r"[a-z0-9']+")


class FakeLLM(LLMClient):
    # Never refuses a call; with PIANO_LLM_RPM/TPM/MAX_IN_FLIGHT set it is still paced
    # by the cluster's limiter, so a dry run behaves like the real endpoint would.
    can_push_back = False

    def __init__(self, seed: int = 0, median_latency: float = 0.05, sigma: float = 0.5,
                 max_latency: float | None = None, embedding_dim: int = 32, *,
                 connection: redis.Redis | None = None, prefix: str | None = None,
                 settings: LLMSettings | None = None):
        if median_latency < 0 or sigma < 0:
            raise ValueError("median_latency and sigma must be >= 0")
        super().__init__(connection=connection, prefix=prefix, settings=settings)
        self.seed = int(seed)
        self.median_latency = float(median_latency)
        self.sigma = float(sigma)
        self.max_latency = max_latency
        self.embedding_dim = int(embedding_dim)
        # Latency draws come from one seeded stream: a run's timing is reproducible
        # given the same call order, and never depends on the prompt text.
        self._rng = random.Random(self.seed)
        self._rng_guard = threading.Lock()

    # --- latency -------------------------------------------------------------------------
    def sample_latency(self) -> float:
        if self.median_latency == 0:
            return 0.0
        with self._rng_guard:
            z = self._rng.gauss(0.0, 1.0)
        latency = self.median_latency * math.exp(self.sigma * z)
        return min(latency, self.max_latency) if self.max_latency is not None else latency

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(f"fake://seed/{self.seed}", "fake")

    def _reply_after_latency(self, prompt: str) -> ModelReply:
        delay = self.sample_latency()
        if delay > 0:
            time.sleep(delay)  # the point of a fake model: hold a thread like a real call
        answer = self.answer(prompt)
        return ModelReply(answer, estimate_tokens(prompt), estimate_tokens(answer), model_seconds=delay)

    # --- answers -------------------------------------------------------------------------
    def _digest(self, *parts: str) -> bytes:
        return hashlib.sha256("\x1f".join((str(self.seed),) + parts).encode()).digest()

    def answer(self, prompt: str) -> str:
        """The deterministic answer to ``prompt``, without latency or counting."""
        h = self._digest("complete", prompt)
        if _SCALE.search(prompt):
            return str(1 + h[0] % 10)
        words = list(dict.fromkeys(w.lower() for w in _WORD.findall(prompt) if w.lower() not in _STOP))
        if not words:
            words = ["nothing", "notable"]
        listed = _LIST.search(prompt)
        if listed:
            n = max(1, min(int(listed.group(1)), 20))
            return "\n".join(f"{i + 1}. {self._phrase(words, h, i)}" for i in range(n))
        return self._phrase(words, h, 0).capitalize() + "."

    @staticmethod
    def _phrase(words: list[str], h: bytes, i: int) -> str:
        k = 2 + h[(i + 1) % len(h)] % 3
        picked = [words[h[(i * 5 + j) % len(h)] % len(words)] for j in range(k)]
        return " ".join(dict.fromkeys(picked))

    def complete(self, prompt: str, **kw: Any) -> str:
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, not {type(prompt).__name__}")
        request = ModelRequest("complete", self.endpoint, {"model": self.endpoint.url, "prompt": prompt},
                               estimate_tokens(prompt))
        return self._call(request, lambda timeout: self._reply_after_latency(prompt))

    def embed(self, text: str) -> list[float]:
        """Hashed bag of words, L2-normalised: texts sharing words get a positive cosine,
        so retrieval by relevance behaves sensibly offline. Computed here, at once and
        unmetered: real embedding calls are an order of magnitude faster than completions."""
        vec = [0.0] * self.embedding_dim
        for word in _TOKEN.findall((text or "").lower()):
            h = self._digest("embed", word)
            vec[int.from_bytes(h[:4], "big") % self.embedding_dim] += 1.0 if h[4] & 1 else -1.0
        norm = math.sqrt(sum(x * x for x in vec))
        if norm == 0:
            vec[self._digest("embed-empty", text or "")[0] % self.embedding_dim] = 1.0
            return vec
        return [x / norm for x in vec]
