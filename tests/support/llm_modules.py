"""A module that calls the configured language model, for worker processes in tests
(the workers' environment says which endpoint and limits: PIANO_LLM, PIANO_LLM_*)."""
from __future__ import annotations

from piano_dist import BaseModule
from piano_dist.enhanced_modules.plumbing import resolve_connection
from piano_dist.llm import get_llm


class ModelCaller(BaseModule):
    def __init__(self, agent_state=None, **config):
        super().__init__(agent_state, **config)
        self.llm = get_llm(connection=resolve_connection(agent_state, None, None))

    def run(self, prompt: str = "hello", n: int = 1, **params):
        return [self.llm.complete(f"{prompt} {i}" if n > 1 else prompt, **params) for i in range(n)]

    def embed(self, text: str = "hello"):
        return self.llm.embed(text)
