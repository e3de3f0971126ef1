"""Pluggable language-model clients (FakeLLM offline, OpenAICompatibleLLM over HTTP) and
the path every call takes: shared cache, cluster-wide limiter, retries, accounting."""
from .base import LLMClient, LLMError
from .errors import EndpointError
from .factory import get_llm
from .fake import FakeLLM
from .openai_compat import OpenAICompatibleLLM
from .records import CallRecord, add_call_listener, remove_call_listener
from .settings import LLMSettings

__all__ = ["CallRecord", "EndpointError", "FakeLLM", "LLMClient", "LLMError", "LLMSettings", "OpenAICompatibleLLM",
           "add_call_listener", "get_llm", "remove_call_listener"]
