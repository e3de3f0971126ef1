"""OpenAICompatibleLLM: any server speaking /v1/chat/completions and /v1/embeddings
(OpenAI, vLLM, llama.cpp server, Ollama, LM Studio), over urllib: no extra dependency."""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

import redis

from .base import LLMClient, LLMError

DEFAULT_URL = "https://api.openai.com"
DEFAULT_MODEL = "gpt-4o-mini"
_RETRY_STATUS = {429, 500, 502, 503, 504}


class OpenAICompatibleLLM(LLMClient):
    def __init__(self, url: str | None = None, model: str | None = None, api_key: str | None = None,
                 embedding_model: str | None = None, timeout: float = 60.0, retries: int = 2, *,
                 connection: redis.Redis | None = None, prefix: str | None = None):
        super().__init__(connection=connection, prefix=prefix)
        base = (url or os.environ.get("PIANO_LLM_URL") or DEFAULT_URL).rstrip("/")
        # Accept both ".../v1" and the bare server address.
        self.base_url = base[:-3] if base.endswith("/v1") else base
        self.model = model or os.environ.get("PIANO_LLM_MODEL") or DEFAULT_MODEL
        self.embedding_model = (embedding_model or os.environ.get("PIANO_LLM_EMBED_MODEL")
                                or self.model)
        self.api_key = api_key if api_key is not None else os.environ.get("PIANO_LLM_KEY")
        self.timeout = float(timeout)
        self.retries = int(retries)

    def __repr__(self) -> str:  # never show the key
        return f"OpenAICompatibleLLM(url={self.base_url!r}, model={self.model!r})"

    def _post(self, path: str, body: dict) -> dict:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        delay = 0.5
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:500].decode(errors="replace")
                if exc.code in _RETRY_STATUS and attempt < self.retries:
                    time.sleep(delay)  # back off before retrying a rate limit or server error
                    delay *= 2
                    continue
                raise LLMError(f"POST {path} -> HTTP {exc.code}: {detail}") from None
            except (urllib.error.URLError, TimeoutError, json.JSONDecodeError) as exc:
                if attempt < self.retries and not isinstance(exc, json.JSONDecodeError):
                    time.sleep(delay)
                    delay *= 2
                    continue
                raise LLMError(f"POST {path} failed: {exc}") from None
        raise LLMError(f"POST {path} failed")  # unreachable: the loop returns or raises

    def complete(self, prompt: str, **kw: Any) -> str:
        body = {"model": kw.pop("model", self.model),
                "messages": kw.pop("messages", None) or [{"role": "user", "content": prompt}], **kw}
        with self._tracked():
            reply = self._post("/v1/chat/completions", body)
        try:
            return reply["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise LLMError(f"unexpected chat completion reply: {str(reply)[:300]}") from None

    def embed(self, text: str) -> list[float]:
        with self._tracked():
            reply = self._post("/v1/embeddings", {"model": self.embedding_model, "input": text})
        try:
            return [float(x) for x in reply["data"][0]["embedding"]]
        except (KeyError, IndexError, TypeError, ValueError):
            raise LLMError(f"unexpected embeddings reply: {str(reply)[:300]}") from None
