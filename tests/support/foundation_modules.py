"""Modules used by the foundation tests' validation cases."""
from __future__ import annotations

from piano_dist import BaseModule


class WithAttributes(BaseModule):
    """Has a non-callable class attribute and a property next to its methods."""

    threshold = 3

    @property
    def mood(self):
        return "calm"

    def run(self, x=0):
        return x

    def _hidden(self):
        return "hidden"
