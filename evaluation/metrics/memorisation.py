"""Memorisation: synthetic records that copy a real one, and how close each comes to the real data."""

from __future__ import annotations

import numpy as np

from .base import MetricRecord


def exact_copies(real_texts: list[str], synthetic_texts: list[str]) -> MetricRecord:
    if not synthetic_texts:
        return MetricRecord("memorisation/exact_copy_share", None, "lower", len(real_texts), 0,
                            reason="no synthetic records")
    real = set(real_texts)
    share = sum(t in real for t in synthetic_texts) / len(synthetic_texts)
    return MetricRecord("memorisation/exact_copy_share", share, "lower", len(real_texts), len(synthetic_texts))


def nearest_similarity(queries: np.ndarray, reference: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Each query's highest cosine similarity to a reference row (rows are unit vectors)."""
    if len(queries) == 0 or len(reference) == 0:
        return np.zeros(0)
    return np.concatenate([(queries[i:i + chunk] @ reference.T).max(axis=1)
                           for i in range(0, len(queries), chunk)]).astype(np.float64)
