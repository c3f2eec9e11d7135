"""AM (attribute match): 1-Wasserstein for numeric attributes, total variation for categorical ones.

Computed only on parseable records; an attribute with no values on either side is
``None`` with the reason, not a perfect 0.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from scipy.stats import wasserstein_distance

from ..grammar import ParsedRecord
from ..nodes import as_number, unquote, word_count
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


def extract(parsed: list[ParsedRecord], contents: list[str], *, length_nodes: list[str], count_nodes: list[str],
            numeric_nodes: list[str], categorical_nodes: list[str]) -> dict[str, tuple[str, list]]:
    """Attribute values of the parseable records: name -> ("numeric" | "categorical", values).

    ``words`` is a record's content length in whitespace-separated words; ``length/<node>``
    each occurrence's length; ``count/<node>`` occurrences per record;
    ``value/<node>`` a node read as a number (texts that are not numbers are left
    out); ``category/<node>`` a node's (unquoted) text.
    """
    ok = [p for p in parsed if p.ok]
    words = [float(len(c.split())) for p, c in zip(parsed, contents, strict=True) if p.ok]
    out: dict[str, tuple[str, list]] = {"words": ("numeric", words)}
    for n in length_nodes:
        out[f"length/{n}"] = ("numeric", [float(word_count(t)) for p in ok for t in p.nodes.get(n, [])])
    for n in count_nodes:
        out[f"count/{n}"] = ("numeric", [float(len(p.nodes.get(n, []))) for p in ok])
    for n in numeric_nodes:
        values = (as_number(t) for p in ok for t in p.nodes.get(n, []))
        out[f"value/{n}"] = ("numeric", [v for v in values if v is not None])
    for n in categorical_nodes:
        out[f"category/{n}"] = ("categorical", [unquote(t) for p in ok for t in p.nodes.get(n, [])])
    return out


def attribute_match(real: dict[str, tuple[str, list]], synthetic: dict[str, tuple[str, list]]) -> list[MetricRecord]:
    records = []
    for name, (kind, values) in real.items():
        other = synthetic[name][1]
        records.append(numeric_w1(name, values, other) if kind == "numeric" else categorical_tv(name, values, other))
    return records
