"""CFG-PR: the share of synthetic records that parse under the grammar."""

from __future__ import annotations

from ..grammar import ParsedRecord
from .base import MetricRecord


def cfg_pass_rate(parsed: list[ParsedRecord]) -> MetricRecord:
    if not parsed:
        return MetricRecord("cfg_pr", None, "higher", n_synthetic=0, reason="no synthetic records")
    ok = sum(p.ok for p in parsed)
    return MetricRecord("cfg_pr", ok / len(parsed), "higher", n_synthetic=len(parsed))
