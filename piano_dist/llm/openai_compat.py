"""OpenAICompatibleLLM: any server speaking /v1/chat/completions and /v1/embeddings
(OpenAI, vLLM, llama.cpp server, Ollama, LM Studio), over urllib3 with keep-alive.

Failures become :class:`EndpointError` (status and URL in the message): 408, 409, 425,
429 and 5xx, timeouts and refused connections are transient and retried by the
metering path; a 429/503's Retry-After pauses every worker's calls to the endpoint.
"""
from __future__ import annotations

import json
import os
import threading
from typing import Any

import redis
import urllib3

from .base import LLMClient, ModelReply, ModelRequest
from .endpoint import Endpoint, estimate_message_tokens, estimate_tokens
from .errors import RETRY_STATUS, EndpointError, LLMError, TransientEndpointError, parse_retry_after
from .settings import LLMSettings

DEFAULT_URL = "https://api.openai.com"
DEFAULT_MODEL = "gpt-4o-mini"
CONNECT_TIMEOUT = 10.0
POOL_SIZE = 128

_pools: dict[int, urllib3.PoolManager] = {}
_pools_guard = threading.Lock()


def _pool() -> urllib3.PoolManager:
    """One keep-alive pool per process (a forked child must not share its parent's sockets)."""
    pid = os.getpid()
    with _pools_guard:
        pool = _pools.get(pid)
        if pool is None:
            pool = urllib3.PoolManager(num_pools=16, maxsize=POOL_SIZE, block=False, retries=False)
            _pools.clear()
            _pools[pid] = pool
        return pool


class OpenAICompatibleLLM(LLMClient):
    def __init__(self, url: str | None = None, model: str | None = None, api_key: str | None = None,
                 embedding_model: str | None = None, timeout: float | None = None, retries: int | None = None,
                 *, connection: redis.Redis | None = None, prefix: str | None = None,
                 settings: LLMSettings | None = None):
        """``retries``: at most this many retries of a failed attempt (default: as many as
        PIANO_LLM_RETRY_DEADLINE allows). ``timeout`` overrides PIANO_LLM_TIMEOUT."""
        settings = settings if settings is not None else LLMSettings.from_env()
        if timeout is not None:
            if not timeout > 0:
                raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
            settings = LLMSettings(**{**settings.as_dict(), "timeout": float(timeout)})
        super().__init__(connection=connection, prefix=prefix, settings=settings, retries=retries)
        base = (url or os.environ.get("PIANO_LLM_URL") or DEFAULT_URL).rstrip("/")
        # Accept both ".../v1" and the bare server address.
        self.base_url = base[:-3] if base.endswith("/v1") else base
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"PIANO_LLM_URL must start with http:// or https://, not {base!r}")
        self.model = model or os.environ.get("PIANO_LLM_MODEL") or DEFAULT_MODEL
        self.embedding_model = (embedding_model or os.environ.get("PIANO_LLM_EMBED_MODEL")
                                or self.model)
        self.api_key = api_key if api_key is not None else os.environ.get("PIANO_LLM_KEY")

    def __repr__(self) -> str:  # never show the key
        return f"OpenAICompatibleLLM(url={self.base_url!r}, model={self.model!r})"

    @property
    def timeout(self) -> float:
        return self.settings.timeout

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.base_url, self.model)

    # --- the two calls -------------------------------------------------------------------
    def complete(self, prompt: str, **kw: Any) -> str:
        body = {"model": kw.pop("model", self.model),
                "messages": kw.pop("messages", None) or [{"role": "user", "content": prompt}], **kw}
        if self.settings.seed is not None and "seed" not in body:
            body["seed"] = self.settings.seed
        prompt_tokens = estimate_message_tokens(body["messages"])
        max_completion = body.get("max_completion_tokens") or body.get("max_tokens") or 0
        request = ModelRequest("complete", Endpoint(self.base_url, str(body["model"])), body, prompt_tokens,
                               int(max_completion) if isinstance(max_completion, int) else 0)
        return self._call(request, lambda timeout: self._chat(body, prompt_tokens, timeout))

    def embed(self, text: str) -> list[float]:
        body = {"model": self.embedding_model, "input": text}
        request = ModelRequest("embed", Endpoint(self.base_url, self.embedding_model), body, estimate_tokens(text))
        return self._call(request, lambda timeout: self._embedding(body, timeout))

    def _chat(self, body: dict, prompt_estimate: int, timeout: float) -> ModelReply:
        reply = self._post("/v1/chat/completions", body, timeout)
        try:
            content = reply["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise LLMError(f"unexpected chat completion reply from {self.base_url}: {str(reply)[:300]}") from None
        if not isinstance(content, str):
            raise LLMError(f"unexpected chat completion content from {self.base_url}: {str(content)[:300]}")
        prompt_tokens, completion_tokens = _usage(reply, prompt_estimate, estimate_tokens(content))
        return ModelReply(content, prompt_tokens, completion_tokens)

    def _embedding(self, body: dict, timeout: float) -> ModelReply:
        reply = self._post("/v1/embeddings", body, timeout)
        try:
            vector = [float(x) for x in reply["data"][0]["embedding"]]
        except (KeyError, IndexError, TypeError, ValueError):
            raise LLMError(f"unexpected embeddings reply from {self.base_url}: {str(reply)[:300]}") from None
        prompt_tokens, _ = _usage(reply, estimate_tokens(body["input"]), 0)
        return ModelReply(vector, prompt_tokens, 0)

    # --- HTTP ------------------------------------------------------------------------------
    def _post(self, path: str, body: dict, timeout: float) -> dict:
        """One attempt. Raises EndpointError (TransientEndpointError when worth retrying)."""
        url = self.base_url + path
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        try:
            response = _pool().request(
                "POST", url, body=json.dumps(body).encode(), headers=headers, retries=False,
                timeout=urllib3.Timeout(connect=min(CONNECT_TIMEOUT, timeout), read=timeout))
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransientEndpointError(f"POST {url} failed: {type(exc).__name__}: {exc}", url=url) from None
        if response.status >= 400:
            detail = response.data[:500].decode(errors="replace")
            kind = TransientEndpointError if response.status in RETRY_STATUS else EndpointError
            raise kind(f"POST {url} -> HTTP {response.status}: {detail}", status=response.status, url=url,
                       retry_after=parse_retry_after(response.headers))
        try:
            reply = json.loads(response.data)
        except ValueError:
            raise LLMError(f"POST {url} -> HTTP {response.status} with a reply that is not JSON: "
                           f"{response.data[:300]!r}") from None
        if not isinstance(reply, dict):
            raise LLMError(f"POST {url} -> HTTP {response.status} with an unexpected reply: {str(reply)[:300]}")
        return reply


def _usage(reply: dict, prompt_estimate: int, completion_estimate: int) -> tuple[int, int]:
    """The reply's own token counts when it gives them, else the estimates."""
    usage = reply.get("usage")
    if not isinstance(usage, dict):
        return prompt_estimate, completion_estimate
    return _count(usage.get("prompt_tokens"), prompt_estimate), _count(usage.get("completion_tokens"),
                                                                       completion_estimate)


def _count(value: Any, fallback: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**9 else fallback
