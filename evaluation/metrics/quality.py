"""Tabular quality in the field's terms: SDMetrics' QualityReport (column shapes: KS / TV complement per
column; column pair trends: correlation / contingency similarity per pair), overall = their mean.

Beside the synthetic score, the same report of the held-out real rows against the other real rows
(a real-vs-real reference: what a perfect generator with this little data could score).
"""

from __future__ import annotations

import warnings

import pandas as pd

from .base import MetricRecord

NAMES = ("quality/sdmetrics_overall", "quality/column_shapes", "quality/column_pair_trends")


def _report(real: pd.DataFrame, synthetic: pd.DataFrame, numeric: list[str]) -> tuple[float, float, float]:
    from sdmetrics.reports.single_table import QualityReport

    meta = {"columns": {c: {"sdtype": "numerical" if c in numeric else "categorical"} for c in real.columns}}
    synthetic = synthetic[list(real.columns)].copy()
    for c in real.columns:  # one dtype per column on both sides (SDMetrics compares them as given)
        kind = float if c in numeric else str
        real[c] = pd.to_numeric(real[c], errors="coerce") if kind is float else real[c].astype("object")
        synthetic[c] = pd.to_numeric(synthetic[c], errors="coerce") if kind is float else synthetic[c].astype("object")
    report = QualityReport()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report.generate(real, synthetic, meta, verbose=False)
    props = report.get_properties().set_index("Property")["Score"]
    return float(report.get_score()), float(props["Column Shapes"]), float(props["Column Pair Trends"])


def sdmetrics_quality(real: pd.DataFrame, synthetic: pd.DataFrame, columns: list[str], numeric: list[str],
                      train_idx, test_idx) -> list[MetricRecord]:
    try:
        import sdmetrics  # noqa: F401
    except ImportError:
        reason = "sdmetrics is not installed (scripts/bootstrap.sh installs it; or pip install sdmetrics)"
        return [MetricRecord(n, None, "higher", reason=reason) for n in NAMES]
    if len(columns) < 2 or len(synthetic) == 0:
        reason = "needs at least two table columns and one synthetic record"
        return [MetricRecord(n, None, "higher", reason=reason) for n in NAMES]
    scores = _report(real[columns].copy(), synthetic, numeric)
    held_out = _report(real.iloc[test_idx][columns].copy(), real.iloc[train_idx][columns], numeric)
    out = [MetricRecord(n, v, "higher", len(real), len(synthetic)) for n, v in zip(NAMES, scores, strict=True)]
    out += [MetricRecord(n.replace("quality/", "quality/real_holdout_"), v, "reference", len(test_idx), len(train_idx))
            for n, v in zip(NAMES, held_out, strict=True)]
    return out
