"""AM (attribute match): 1-Wasserstein for numeric attributes, total variation for categorical ones.

Computed only on parseable records; an attribute with no values on either side is
``None`` with the reason, not a perfect 0.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from scipy.stats import wasserstein_distance

from .base import MetricRecord


def numeric_w1(name: str, real: Sequence[float], synthetic: Sequence[float]) -> MetricRecord:
    metric = f"am/w1/{name}"
    if not real or not synthetic:
        side = "real" if not real else "synthetic"
        return MetricRecord(metric, None, "lower", len(real), len(synthetic), reason=f"no {side} values")
    return MetricRecord(metric, float(wasserstein_distance(real, synthetic)), "lower", len(real), len(synthetic))


def categorical_tv(name: str, real: Sequence[str], synthetic: Sequence[str]) -> MetricRecord:
    metric = f"am/tv/{name}"
    if not real or not synthetic:
        side = "real" if not real else "synthetic"
        return MetricRecord(metric, None, "lower", len(real), len(synthetic), reason=f"no {side} values")
    p, q = Counter(real), Counter(synthetic)
    tv = 0.5 * sum(abs(p[k] / len(real) - q[k] / len(synthetic)) for k in set(p) | set(q))
    return MetricRecord(metric, tv, "lower", len(real), len(synthetic))


def mean_of(name: str, records: list[MetricRecord]) -> MetricRecord:
    values = [r.value for r in records if r.value is not None]
    if not values:
        return MetricRecord(name, None, "lower", reason="no attribute had values on both sides")
    return MetricRecord(name, sum(values) / len(values), "lower")
