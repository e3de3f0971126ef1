"""Seed-style modules: plain classes, no BaseModule, built from (agent_state, **config)."""
from __future__ import annotations

import os


class PlainCounter:
    """Importable by workers (tests/ is on their PYTHONPATH)."""

    def __init__(self, agent_state=None, start=0):
        self.agent_state = agent_state
        self.count = start

    def run(self, step=1):
        self.count += step
        return {"count": self.count, "pid": os.getpid()}

    def where(self):
        return os.getpid()

    def on_state_change(self, changes):  # a hook, not a task method
        pass


class OtherCounter(PlainCounter):
    pass
