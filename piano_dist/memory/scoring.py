"""Generative agents' retrieval score: recency, importance and relevance, each min-max
normalised to 0..1, combined with weights (0.5, 3, 2) by default.

Recency ranks nodes by last access, most recent first (rank 0 scores decay**1). The
original sorted oldest-first and so favoured the *least* recently used nodes; the paper
describes, and this implements, the opposite.
"""
from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, Iterable, Sequence

if TYPE_CHECKING:  # numpy is imported by the functions that use it (see associative.py)
    import numpy as np

DEFAULT_WEIGHTS = (0.5, 3.0, 2.0)
RECENCY_DECAY = 0.99

_WORD = re.compile(r"[a-z0-9']+")
_STOPWORDS = frozenset(
    "a an and are as at be by for from has have he her his i in is it its of on or she "
    "that the their them they this to was were will with".split())


def tokens(text: str | None) -> set[str]:
    return {w for w in _WORD.findall((text or "").lower()) if w not in _STOPWORDS}


def normalise(values: dict[str, float]) -> dict[str, float]:
    """Min-max to 0..1; when all values are equal each gets 0.5 (as the original did)."""
    if not values:
        return {}
    low, high = min(values.values()), max(values.values())
    if high - low == 0:
        return {k: 0.5 for k in values}
    return {k: (v - low) / (high - low) for k, v in values.items()}


def recency(ids_most_recent_first: Sequence[str], decay: float = RECENCY_DECAY) -> dict[str, float]:
    return {node_id: decay ** (rank + 1) for rank, node_id in enumerate(ids_most_recent_first)}


def cosine(a: Sequence[float] | None, b: Sequence[float] | None) -> float:
    if not a or not b or len(a) != len(b):
        return 0.0
    dot = sum(x * y for x, y in zip(a, b))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def keyword_overlap(query_tokens: set[str], node_tokens: Iterable[str]) -> float:
    """Share of the query's words the node mentions (its keywords or description)."""
    if not query_tokens:
        return 0.0
    return len(query_tokens & set(node_tokens)) / len(query_tokens)


def combine(rec: dict[str, float], imp: dict[str, float], rel: dict[str, float],
            weights: Sequence[float] = DEFAULT_WEIGHTS) -> dict[str, tuple[float, float, float, float]]:
    """node_id -> (total, recency, importance, relevance), all three normalised."""
    rec, imp, rel = normalise(rec), normalise(imp), normalise(rel)
    w_rec, w_imp, w_rel = weights
    return {k: (w_rec * rec[k] + w_imp * imp[k] + w_rel * rel[k], rec[k], imp[k], rel[k]) for k in rec}


def cosines(query: Sequence[float], vectors: Sequence[Any]) -> np.ndarray:
    """Cosine of ``query`` with each vector (0 where a vector is missing or of another
    length), computed as one matrix product."""
    import numpy as np
    q = np.asarray(query, dtype=np.float64)
    out = np.zeros(len(vectors))
    rows = [i for i, v in enumerate(vectors) if v is not None and len(v) == len(q)]
    q_norm = np.linalg.norm(q)
    if not rows or q_norm == 0:
        return out
    matrix = np.vstack([np.asarray(vectors[i], dtype=np.float64) for i in rows])
    norms = np.linalg.norm(matrix, axis=1) * q_norm
    with np.errstate(divide="ignore", invalid="ignore"):
        out[rows] = np.where(norms > 0, matrix @ q / norms, 0.0)
    return out


def normalise_array(values: np.ndarray) -> np.ndarray:
    """Min-max to 0..1; all equal → 0.5 each (as :func:`normalise`)."""
    import numpy as np
    if values.size == 0:
        return values
    low, high = values.min(), values.max()
    if high - low == 0:
        return np.full(values.shape, 0.5)
    return (values - low) / (high - low)


def combine_arrays(rec: np.ndarray, imp: np.ndarray, rel: np.ndarray,
                   weights: Sequence[float] = DEFAULT_WEIGHTS) -> tuple[np.ndarray, tuple]:
    """:func:`combine` over arrays: (total, (recency, importance, relevance) normalised)."""
    rec, imp, rel = normalise_array(rec), normalise_array(imp), normalise_array(rel)
    w_rec, w_imp, w_rel = weights
    return w_rec * rec + w_imp * imp + w_rel * rel, (rec, imp, rel)
