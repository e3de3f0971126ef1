"""Redis-backed memory systems of an agent, shared by every process that names it."""
from .associative import AssociativeMemory, ConceptNode, ScoredNode
from .circular_buffer import CircularBuffer
from .episodic import CausalRelationType, Episode, EpisodeType, EpisodicMemory
from .semantic import ConceptType, SemanticMemory, SemanticRelationType
from .temporal import TemporalMemory

__all__ = [
    "CircularBuffer", "TemporalMemory", "EpisodicMemory", "Episode", "EpisodeType",
    "CausalRelationType", "SemanticMemory", "ConceptType", "SemanticRelationType",
    "AssociativeMemory", "ConceptNode", "ScoredNode",
]
