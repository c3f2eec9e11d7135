"""Tabular quality in the field's terms: SDMetrics' QualityReport (column shapes: KS / TV complement per
column; column pair trends: correlation / contingency similarity per pair), overall = their mean.

Beside the synthetic score, the same report of the held-out real rows against the other real rows
(a real-vs-real reference: what a perfect generator with this little data could score).
"""

from __future__ import annotations

import math
import warnings

import pandas as pd

from .base import MetricRecord

NAMES = ("quality/sdmetrics_overall", "quality/column_shapes", "quality/column_pair_trends")


def _report(real: pd.DataFrame, synthetic: pd.DataFrame, numeric: list[str]) -> tuple[tuple[float, float, float], dict]:
    from sdmetrics.reports.single_table import QualityReport

    meta = {"columns": {c: {"sdtype": "numerical" if c in numeric else "categorical"} for c in real.columns}}
    synthetic = synthetic[list(real.columns)].copy()
    for frame in (real, synthetic):  # one plain dtype per column on both sides
        for c in real.columns:
            frame[c] = (pd.to_numeric(frame[c], errors="coerce").astype(float) if c in numeric
                        else frame[c].astype("object"))
    report = QualityReport()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report.generate(real, synthetic, meta, verbose=False)
    props = report.get_properties().set_index("Property")["Score"]
    shapes = report.get_details("Column Shapes")
    pairs = report.get_details("Column Pair Trends")
    details = {"columns": {str(r["Column"]): _finite(r["Score"]) for _, r in shapes.iterrows()},
               "column_metric": {str(r["Column"]): str(r["Metric"]) for _, r in shapes.iterrows()},
               "pairs": [[str(r["Column 1"]), str(r["Column 2"]), _finite(r["Score"])] for _, r in pairs.iterrows()]}
    return (float(report.get_score()), float(props["Column Shapes"]), float(props["Column Pair Trends"])), details


def _finite(x) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def sdmetrics_quality(real: pd.DataFrame, synthetic: pd.DataFrame, columns: list[str], numeric: list[str],
                      train_idx, test_idx) -> list[MetricRecord]:
    return quality_with_details(real, synthetic, columns, numeric, train_idx, test_idx)[0]


def quality_with_details(real: pd.DataFrame, synthetic: pd.DataFrame, columns: list[str], numeric: list[str],
                         train_idx, test_idx) -> tuple[list[MetricRecord], dict | None]:
    """The overall / shapes / pair-trends records (synthetic, and the real-vs-real reference), and the
    per-column and per-pair scores behind them ({"synthetic": ..., "real_holdout": ...}; None when
    SDMetrics could not run)."""
    try:
        import sdmetrics  # noqa: F401
    except ImportError:
        reason = "sdmetrics is not installed (scripts/bootstrap.sh installs it; or pip install sdmetrics)"
        return [MetricRecord(n, None, "higher", reason=reason) for n in NAMES], None
    if len(columns) < 2 or len(synthetic) == 0:
        reason = "needs at least two table columns and one synthetic record"
        return [MetricRecord(n, None, "higher", reason=reason) for n in NAMES], None
    scores, details = _report(real[columns].copy(), synthetic, numeric)
    held_out, held_details = _report(real.iloc[test_idx][columns].copy(), real.iloc[train_idx][columns], numeric)
    out = [_record(n, v, "higher", len(real), len(synthetic)) for n, v in zip(NAMES, scores, strict=True)]
    out += [_record(n.replace("quality/", "quality/real_holdout_"), v, "reference", len(test_idx), len(train_idx))
            for n, v in zip(NAMES, held_out, strict=True)]
    return out, {"synthetic": details, "real_holdout": held_details}


def _record(name: str, value: float, better: str, n_real: int, n_synthetic: int) -> MetricRecord:
    if math.isfinite(value):
        return MetricRecord(name, value, better, n_real, n_synthetic)
    # SDMetrics leaves out numeric pairs whose real correlation is below its threshold
    return MetricRecord(name, None, better, n_real, n_synthetic,
                        reason="SDMetrics scored no column pair (every real correlation is below its threshold)")
