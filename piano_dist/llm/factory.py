"""get_llm(): the client the environment asks for (PIANO_LLM=fake|openai, default fake)."""
from __future__ import annotations

import os
from typing import Any

from .base import LLMClient


def get_llm(kind: str | None = None, **kw: Any) -> LLMClient:
    """``kind`` or PIANO_LLM: "fake" (offline, default) or "openai" (PIANO_LLM_URL,
    PIANO_LLM_MODEL, PIANO_LLM_KEY). FakeLLM also reads PIANO_FAKE_LLM_SEED and
    PIANO_FAKE_LLM_LATENCY (median seconds). Keyword arguments go to the constructor."""
    kind = (kind or os.environ.get("PIANO_LLM") or "fake").strip().lower()
    if kind == "fake":
        from .fake import FakeLLM

        kw.setdefault("seed", int(os.environ.get("PIANO_FAKE_LLM_SEED", "0")))
        if "PIANO_FAKE_LLM_LATENCY" in os.environ:
            kw.setdefault("median_latency", float(os.environ["PIANO_FAKE_LLM_LATENCY"]))
        return FakeLLM(**kw)
    if kind in ("openai", "openai-compatible", "openai_compatible"):
        from .openai_compat import OpenAICompatibleLLM

        return OpenAICompatibleLLM(**kw)
    raise ValueError(f"PIANO_LLM must be 'fake' or 'openai', not {kind!r}")
