"""KND (key-node dependency): does the synthetic data keep how two parts of a record relate?

Per record, the cosine similarity between the embeddings of node a and node b (for
repeated nodes, consecutive pairs, at most ``max_pairs`` per record); the score is
the 1-Wasserstein distance between that similarity's distribution over the real and
over the synthetic records (0: identical dependency).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.stats import wasserstein_distance

from ..grammar import ParsedRecord
from ..nodes import unquote
from .base import MetricRecord


def node_pairs(parsed: ParsedRecord, a: str, b: str, max_pairs: int) -> list[tuple[str, str]]:
    """Text pairs of one record: (a_i, a_i+1) when a == b, else (a_i, b_i)."""
    xs, ys = parsed.nodes.get(a, []), parsed.nodes.get(b, [])
    pairs = list(zip(xs, xs[1:], strict=False)) if a == b else list(zip(xs, ys, strict=False))
    return [(unquote(x), unquote(y)) for x, y in pairs[:max_pairs]]


def similarities(parsed: list[ParsedRecord], a: str, b: str, embed: Callable[[list[str]], np.ndarray],
                 max_pairs: int) -> np.ndarray:
    pairs = [p for rec in parsed if rec.ok for p in node_pairs(rec, a, b, max_pairs)]
    if not pairs:
        return np.zeros(0)
    left = embed([x for x, _ in pairs])
    right = embed([y for _, y in pairs])
    return np.sum(left * right, axis=1).astype(np.float64)  # rows are unit vectors


def knd(a: str, b: str, real: np.ndarray, synthetic: np.ndarray) -> MetricRecord:
    name = f"knd/{a}~{b}"
    if len(real) == 0 or len(synthetic) == 0:
        side = "real" if len(real) == 0 else "synthetic"
        return MetricRecord(name, None, "lower", len(real), len(synthetic),
                            reason=f"no parseable {side} record has both nodes {a!r} and {b!r}")
    return MetricRecord(name, float(wasserstein_distance(real, synthetic)), "lower", len(real), len(synthetic))
