"""Pairwise association of a table's columns, real beside synthetic, on one scale for every pair.

Each column is made categorical first: a numeric column is cut at the real data's deciles into
bins (e_i, e_i+1] (the same edges for both tables; a column that is mostly 0 still splits into 0 and
more), a categorical one is kept.  The association of two columns is then
the bias-corrected Cramér's V of their contingency table (Bergsma 2013): 0 = independent, 1 = one
determines the other, for numeric and categorical pairs alike, so the real and the synthetic
matrices (and their difference) can be read on one colour scale.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DECILES = np.linspace(0, 1, 11)[1:-1]


def _discrete(real: pd.Series, synthetic: pd.Series, numeric: bool) -> tuple[np.ndarray, np.ndarray]:
    if numeric:
        r = pd.to_numeric(real, errors="coerce")
        s = pd.to_numeric(synthetic, errors="coerce")
        edges = np.unique(np.nanquantile(r.to_numpy(dtype=float), DECILES)) if r.notna().any() else np.array([])
        codes = [np.where(x.isna(), -1, np.searchsorted(edges, x.to_numpy(dtype=float), side="left"))
                 for x in (r, s)]
        return codes[0], codes[1]
    values = pd.concat([real, synthetic]).astype("string").fillna("<missing>")
    codes, _ = pd.factorize(values)
    return codes[: len(real)], codes[len(real):]


def cramers_v(a: np.ndarray, b: np.ndarray) -> float:
    """Bias-corrected Cramér's V of two code arrays (0 when either has a single value)."""
    table = pd.crosstab(a, b).to_numpy(dtype=float)
    n = table.sum()
    r, k = table.shape
    if n < 2 or r < 2 or k < 2:
        return 0.0
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())
    phi2 = max(0.0, chi2 / n - (k - 1) * (r - 1) / (n - 1))
    r_c, k_c = r - (r - 1) ** 2 / (n - 1), k - (k - 1) ** 2 / (n - 1)
    denominator = min(r_c - 1, k_c - 1)
    return float(np.sqrt(phi2 / denominator)) if denominator > 0 else 0.0


def association_matrices(real: pd.DataFrame, synthetic: pd.DataFrame, columns: list[str],
                         numeric: list[str]) -> dict:
    """{"columns", "real", "synthetic"}: Cramér's V matrices (lists of lists, JSON-ready)."""
    codes = {c: _discrete(real[c], synthetic[c], c in numeric) for c in columns}
    size = len(columns)
    out = {"columns": list(columns), "real": np.eye(size).tolist(), "synthetic": np.eye(size).tolist(),
           "measure": "bias-corrected Cramér's V (numbers cut at the real deciles)"}
    for i in range(size):
        for j in range(i + 1, size):
            for side, k in (("real", 0), ("synthetic", 1)):
                v = cramers_v(codes[columns[i]][k], codes[columns[j]][k])
                out[side][i][j] = out[side][j][i] = v
    return out
