"""DP estimates of the domains the user did not declare: category lists, numeric ranges, text lengths.

A column with ``estimate = true`` gets its domain measured from the private data,
paid from the privacy budget, instead of declared public:

* categorical -> the category list: Gaussian-noised counts of the values that occur,
  released only above a threshold (Gaussian partition selection, Wilson et al. 2020,
  "Differentially private SQL with bounded user contribution").  The noisy counts
  are a Gaussian mechanism of L2 sensitivity 1 (a row holds one value); a value that
  only one row holds is released with probability at most ``selection_delta``, which
  is added to the run's δ (the ledger's ``extra_delta``).
* integer / float -> the range [min, max]: Gaussian-noised counts over a fixed,
  data-independent grid of bins (unit bins near zero, geometric beyond); the range
  spans the bins whose noisy count clears a threshold (3 σ above what an empty
  bin would show, Bonferroni over the grid), around the fullest one (a lone bin further than
  two bins from the rest counts only at twice the threshold: else it is noise or a few
  outliers), so outliers held by few rows are cut.
* text -> ``max_chars``: the same on a grid of lengths; the longest length bin that
  clears the threshold.

Every estimate is one Gaussian mechanism with sensitivity 1 per column.  With
user-level privacy a user could hold many rows, so one row per user (drawn at
random) is counted: the sensitivity stays 1.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from trainer.seeds import numpy_rng

from .spec import ColumnSpec, DatasetSpec

_UNIT_LIMIT = 16  # unit-width bins on [-16, 16); geometric (4 per octave) beyond, up to 2^64: coarse enough
# that a small table's bins clear the noise (unit bins up to 1024 cut 1,000 census ages down to one value)
_LENGTH_LIMIT = 1 << 20  # longest text length the grid covers


def _number_edges() -> np.ndarray:
    start = math.log2(_UNIT_LIMIT) + 0.25
    geometric = 2.0 ** np.arange(start, 64.01, 0.25)
    return np.concatenate([-geometric[::-1], np.arange(-_UNIT_LIMIT, _UNIT_LIMIT + 1, dtype=float), geometric])


def _length_edges() -> np.ndarray:
    """Bins [e_i, e_(i+1)) of text length: every length up to 64, then 8 bins per octave."""
    small = np.arange(1, 65, dtype=float)
    big = np.unique(np.floor(2.0 ** np.arange(6.125, math.log2(_LENGTH_LIMIT) + 0.01, 0.125)))
    return np.concatenate([small, big])


@dataclass
class DomainEstimate:
    column: str
    kind: str  # "categories", "range" or "max_chars"
    value: Any  # list[str], [lo, hi], int; None when nothing cleared the noise
    noise_multiplier: float
    threshold: float
    selection_delta: float = 0.0
    # the noisy count of rows inside the released domain (post-processing of the released noisy
    # counts, so DP): with the public N it says what share of rows the domain cannot reproduce
    inside_count: float | None = None

    def describe(self) -> str:
        if self.value is None:
            return f"{self.column}: {self.kind} estimated with DP, nothing cleared the noise: left unconstrained"
        if self.kind == "categories":
            return f"{self.column}: category list estimated with DP ({len(self.value)} values)"
        if self.kind == "range":
            return f"{self.column}: range [{self.value[0]}, {self.value[1]}] estimated with DP"
        return f"{self.column}: at most {self.value} characters (estimated with DP)"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _noisy(counts: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return counts + rng.normal(0.0, sigma, size=counts.shape)


def _bins_above_noise(x: np.ndarray, edges: np.ndarray, sigma: float,
                      rng: np.random.Generator) -> tuple[np.ndarray, float, np.ndarray]:
    """Indices of the bins [edges[i], edges[i+1]) whose Gaussian-noised count of ``x`` exceeds the
    count an empty bin reaches with probability ≤ 5 % over the whole grid (post-processing), the
    threshold, and the noisy counts of every bin (the grid is public: all of them are DP output)."""
    counts = np.bincount(np.searchsorted(edges, x, side="right") - 1, minlength=len(edges) - 1).astype(float)
    threshold = sigma * NormalDist().inv_cdf(1 - 0.05 / len(counts))
    noisy = _noisy(counts, sigma, rng)
    return np.flatnonzero(noisy > threshold), threshold, noisy


def estimate_categories(values: pd.Series, sigma: float, selection_delta: float,
                        rng: np.random.Generator) -> tuple[list[str] | None, float, float]:
    """Values whose noisy count exceeds τ = 1 + σ Φ⁻¹(1 − selection_delta), in order of noisy count;
    τ; the sum of the released values' noisy counts."""
    if not sigma > 0 or not 0 < selection_delta < 1:
        raise ValueError("partition selection needs σ > 0 and 0 < selection_delta < 1")
    threshold = 1 + sigma * NormalDist().inv_cdf(1 - selection_delta)
    counts = values.dropna().astype(str).value_counts(sort=False)
    noisy = _noisy(counts.to_numpy(dtype=float), sigma, rng)
    kept = sorted(((n, v) for n, v in zip(noisy, counts.index, strict=True) if n > threshold), reverse=True)
    return ([v for _, v in kept] or None), threshold, float(sum(n for n, _ in kept))


def estimate_range(values: pd.Series, integer: bool, sigma: float,
                   rng: np.random.Generator) -> tuple[list[float] | None, float, float | None]:
    """[left edge of the lowest, right edge of the highest] bin whose noisy count clears the threshold;
    the threshold; the noisy count of the rows inside that range."""
    edges = _number_edges()
    x = np.clip(pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float), edges[0], edges[-1] - 1e-9)
    passed, threshold, noisy = _bins_above_noise(x, edges, sigma, rng)
    if not len(passed):
        return None, threshold, None
    first, last = _bulk(passed, noisy, threshold)
    lo, hi = float(edges[first]), float(edges[last + 1])
    inside = float(noisy[first: last + 1].sum())
    if integer:  # integer bins hold [lo, hi): the largest integer in the top bin is hi - 1
        return [int(math.ceil(lo)), int(math.ceil(hi)) - 1], threshold, inside
    return [lo, hi], threshold, inside


# passing bins further than this many failing bins from the bulk are left out of a range
RANGE_GAP = 2


def _bulk(passed: np.ndarray, noisy: np.ndarray, threshold: float) -> tuple[int, int]:
    """The first and last bin of the run of passing bins around the highest noisy count (bridging gaps
    of at most RANGE_GAP failing bins), widened to any distant bin at twice the threshold or more.
    With 5 % a grid of ~500 empty bins shows one barely above the threshold somewhere: such a lone
    bin must not stretch age to [16, 1,763,487]; a real distant cluster clears it by far (noise
    reaching 2x the threshold, ~8 σ, does not happen).  Post-processing of the noisy counts."""
    peak = int(passed[np.argmax(noisy[passed])])
    kept = {peak}
    ordered = sorted(passed.tolist())
    i = ordered.index(peak)
    for step, stop in ((1, len(ordered)), (-1, -1)):
        j, edge = i + step, peak
        while j != stop and abs(ordered[j] - edge) <= RANGE_GAP + 1:
            edge = ordered[j]
            kept.add(edge)
            j += step
    kept.update(int(b) for b in passed if noisy[b] >= 2 * threshold)
    return min(kept), max(kept)


def estimate_max_chars(values: pd.Series, sigma: float, rng: np.random.Generator
                       ) -> tuple[int | None, float, float | None]:
    """The right edge of the longest length bin whose noisy count clears the threshold; the
    threshold; the noisy count of the texts no longer than that."""
    edges = _length_edges()
    lengths = np.clip(values.dropna().astype(str).str.len().to_numpy(dtype=float), 1, edges[-1] - 1)
    passed, threshold, noisy = _bins_above_noise(lengths, edges, sigma, rng)
    if not len(passed):
        return None, threshold, None
    return int(edges[passed[-1] + 1]) - 1, threshold, float(noisy[: passed[-1] + 1].sum())


def one_row_per_unit(frame: pd.DataFrame, units: list | None, rng: np.random.Generator) -> pd.DataFrame:
    """Example level: every row.  User level: one row per user, drawn at random (sensitivity 1)."""
    if units is None:
        return frame
    order = rng.permutation(len(frame))
    keys = pd.Series(units).iloc[order]
    first = order[~keys.duplicated().to_numpy()]
    return frame.iloc[np.sort(first)]


def estimate_domains(frame: pd.DataFrame, spec: DatasetSpec, *, noise_multiplier: float, selection_delta: float,
                     units: list | None = None, seed: int | None = None) -> list[DomainEstimate]:
    """One DP estimate per ``estimate = true`` column (``selection_delta`` per categorical column)."""
    rng = numpy_rng(seed, "domains")
    rows = one_row_per_unit(frame, units, rng)
    out = []
    for col in spec.columns:
        if not col.estimate:
            continue
        values = rows[col.name]
        present = values.dropna()  # a missing value is in every nullable column's domain
        if col.type == "categorical":
            value, tau, inside = estimate_categories(present, noise_multiplier, selection_delta, rng)
            out.append(DomainEstimate(col.name, "categories", value, noise_multiplier, tau, selection_delta, inside))
        elif col.type in ("integer", "float"):
            value, tau, inside = estimate_range(present, col.type == "integer", noise_multiplier, rng)
            out.append(DomainEstimate(col.name, "range", value, noise_multiplier, tau, inside_count=inside))
        else:
            value, tau, inside = estimate_max_chars(present, noise_multiplier, rng)
            out.append(DomainEstimate(col.name, "max_chars", value, noise_multiplier, tau, inside_count=inside))
    return out


# records: the value an estimated category list adds for every value below its release threshold, so
# that a row holding a rare value is kept (that cell becomes OTHER) instead of left out of training
OTHER_CATEGORY = "(other)"


def apply_estimates(spec: DatasetSpec, estimates: list[DomainEstimate], *, other: bool = False) -> DatasetSpec:
    """The spec with the estimated domains filled in (and ``estimate`` cleared: the values are now fixed).
    ``other``: every estimated category list also gets OTHER_CATEGORY (data-independent: always added)."""
    by_name = {e.column: e for e in estimates}

    def filled(col: ColumnSpec) -> ColumnSpec:
        e = by_name.get(col.name)
        if e is None:
            return col
        changes: dict[str, Any] = {"estimate": False}
        if e.value is None and e.kind == "categories":
            from trainer.errors import ConfigError

            raise ConfigError(f"the DP estimate of {col.name!r}'s category list released no value (no value is "
                              f"held by enough rows to clear the noise, threshold {e.threshold:.1f}): declare the "
                              "categories, make it a text column, or lower spec.estimate_noise")
        if e.value is not None:
            if e.kind == "categories":
                changes["categories"] = list(e.value) + ([OTHER_CATEGORY] if other and OTHER_CATEGORY
                                                         not in e.value else [])
            elif e.kind == "range":
                changes["min"], changes["max"] = e.value
            else:
                changes["max_chars"] = int(e.value)
        return dataclasses.replace(col, **changes)

    return dataclasses.replace(spec, columns=[filled(c) for c in spec.columns])
