"""Redis-backed memory systems of an agent, shared by every process that names it."""
from .circular_buffer import CircularBuffer
from .episodic import CausalRelationType, Episode, EpisodeType, EpisodicMemory
from .temporal import TemporalMemory

__all__ = [
    "CircularBuffer", "TemporalMemory", "EpisodicMemory", "Episode", "EpisodeType",
    "CausalRelationType",
]
