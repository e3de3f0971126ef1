"""Pluggable language-model clients: FakeLLM offline, OpenAICompatibleLLM over HTTP."""
from .base import LLMClient, LLMError
from .factory import get_llm
from .fake import FakeLLM
from .openai_compat import OpenAICompatibleLLM

__all__ = ["FakeLLM", "LLMClient", "LLMError", "OpenAICompatibleLLM", "get_llm"]
