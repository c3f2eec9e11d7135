"""Metric records: plain values, with ``None`` and a reason where a value is undefined (never 0)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MetricRecord:
    name: str  # e.g. "cfg_pr", "am/w1/title_length"
    value: float | None
    better: str  # "higher", "lower", or "reference" (a yardstick for another metric)
    n_real: int | None = None
    n_synthetic: int | None = None
    reason: str | None = None  # why value is None

    def __post_init__(self):
        if (self.value is None) != (self.reason is not None):
            raise ValueError(f"{self.name}: a metric is either a value or None with a reason")
