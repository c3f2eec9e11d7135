"""Conditioning columns: their public domain and the distribution they are drawn from at generation.

A record is generated *given* the values of its conditioning columns (e.g. rating ->
review): in training those values sit in the prompt and carry no loss.  At generation
the values are drawn from a distribution that is either declared public by the user
(``spec.conditioning_weights``) or measured from the private data as a Gaussian-noised
histogram over the columns' *declared* domain, charged to the privacy budget (one
Gaussian mechanism of L2 sensitivity 1: a row moves one count; with user-level privacy
the pipeline counts one row per user, so a user moves one count).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from trainer.errors import ConfigError
from trainer.seeds import numpy_rng

from .spec import DatasetSpec

MAX_CELLS = 10_000


def domain(spec: DatasetSpec) -> list[tuple]:
    """Every combination of the conditioning columns' declared values (never read from the data)."""
    per_column = []
    for name in spec.conditioning:
        col = spec.column(name)
        if col.type == "categorical" and col.categories:
            per_column.append(list(col.categories))
        elif col.type == "integer" and col.min is not None and col.max is not None:
            per_column.append(list(range(math.ceil(col.min), math.floor(col.max) + 1)))
        else:
            raise ConfigError(
                f"conditioning column {name!r} needs a finite public domain for its DP histogram: a categorical "
                "column with declared categories, or an integer column with declared min and max (a float column "
                "is drawn from a column model: columns.model = \"aim\")")
    cells = math.prod(len(v) for v in per_column)
    if cells > MAX_CELLS:
        raise ConfigError(f"the conditioning columns have {cells} value combinations (at most {MAX_CELLS})")
    return list(itertools.product(*per_column))


@dataclass
class ConditioningDistribution:
    columns: list[str]
    cells: list[tuple]
    weights: list[float]  # sum to 1
    source: str  # "declared public" or "DP histogram"
    noise_multiplier: float | None = None

    def sample(self, n: int, rng: np.random.Generator) -> list[tuple]:
        idx = rng.choice(len(self.cells), size=n, p=np.asarray(self.weights))
        return [self.cells[i] for i in idx]

    def to_dict(self) -> dict[str, Any]:
        return {"columns": self.columns, "cells": [list(c) for c in self.cells], "weights": self.weights,
                "source": self.source, "noise_multiplier": self.noise_multiplier}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ConditioningDistribution":
        return cls(d["columns"], [tuple(c) for c in d["cells"]], d["weights"], d["source"], d.get("noise_multiplier"))


def declared(spec: DatasetSpec) -> ConditioningDistribution:
    """The user's public weights over the single conditioning column's domain."""
    cells = domain(spec)
    by_key = {str(c[0]): c for c in cells}
    weights = dict.fromkeys(by_key, 0.0)
    for key, w in spec.conditioning_weights.items():
        if str(key) not in by_key:
            raise ConfigError(f"conditioning_weights: {key!r} is not in the declared domain {list(by_key)}")
        weights[str(key)] = float(w)
    total = sum(weights.values())
    return ConditioningDistribution(list(spec.conditioning), cells, [w / total for w in weights.values()],
                                    "declared public")


def dp_histogram(frame: pd.DataFrame, spec: DatasetSpec, noise_multiplier: float,
                 seed: int | None = None) -> ConditioningDistribution:
    """Counts of each domain cell in the private rows plus N(0, σ²) noise, clipped at 0, normalised.

    Rows whose values fall outside the declared domain count nowhere (the sensitivity stays 1).
    An all-zero noisy histogram falls back to uniform (post-processing: no extra cost).
    """
    cells = domain(spec)
    index = {c: i for i, c in enumerate(cells)}
    counts = np.zeros(len(cells))
    for row in frame[spec.conditioning].itertuples(index=False):
        i = index.get(tuple(plain_value(v) for v in row))
        if i is not None:
            counts[i] += 1
    rng = numpy_rng(seed, "conditioning_histogram")
    noisy = np.clip(counts + rng.normal(0.0, noise_multiplier, size=len(cells)), 0, None)
    weights = noisy / noisy.sum() if noisy.sum() > 0 else np.full(len(cells), 1 / len(cells))
    return ConditioningDistribution(list(spec.conditioning), cells, weights.tolist(), "DP histogram", noise_multiplier)


def plain_value(v):
    """A numpy / pandas scalar as the Python value it stands for (a missing value: None)."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    return v.item() if hasattr(v, "item") else v
