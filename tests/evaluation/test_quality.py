"""SDMetrics' QualityReport in the evaluator: higher for a faithful table than for a scrambled one, with
the real-vs-real reference beside it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from evaluation.metrics.quality import sdmetrics_quality


def test_quality_scores_rank_a_faithful_table_above_a_scrambled_one_and_carry_a_reference():
    rng = np.random.default_rng(0)
    n = 400
    a = rng.choice(["x", "y"], size=n, p=[0.8, 0.2])
    real = pd.DataFrame({"a": a, "b": np.where(a == "x", rng.normal(10, 1, n), rng.normal(30, 1, n)),
                         "c": rng.choice(["p", "q", "r"], size=n)})
    faithful = real.sample(frac=1.0, random_state=1).reset_index(drop=True)
    scrambled = pd.DataFrame({"a": rng.choice(["x", "y"], size=n), "b": rng.uniform(0, 40, n),
                              "c": rng.choice(["p", "q", "r"], size=n, p=[0.9, 0.05, 0.05])})
    idx = np.arange(n)

    def scores(synthetic):
        return {m.name: m.value for m in sdmetrics_quality(real, synthetic, ["a", "b", "c"], ["b"], idx[:300], idx[300:])}

    good, bad = scores(faithful), scores(scrambled)
    assert good["quality/sdmetrics_overall"] > 0.95 > bad["quality/sdmetrics_overall"]
    assert good["quality/column_pair_trends"] > bad["quality/column_pair_trends"] + 0.1
    assert 0.6 < good["quality/real_holdout_sdmetrics_overall"] <= 1.0  # 100 held-out rows vs 300: noisier



def test_a_pair_sdmetrics_leaves_out_is_none_with_a_reason_not_nan():
    """SDMetrics skips numeric pairs whose real correlation is weak: with no pair left the score is
    undefined, said so, never NaN."""
    rng = np.random.default_rng(0)
    real = pd.DataFrame({"rating": pd.array(rng.integers(1, 6, 300), dtype="Int64"), "other": rng.normal(0, 1, 300)})
    idx = np.arange(300)
    records = {m.name: m for m in sdmetrics_quality(real, real.copy(), ["rating", "other"], ["rating", "other"],
                                                    idx[:200], idx[200:])}
    pair = records["quality/column_pair_trends"]
    assert pair.value is None and "threshold" in pair.reason
    assert records["quality/column_shapes"].value > 0.9
