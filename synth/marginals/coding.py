"""Columns as small integer codes over their *public* domains, and back.

A marginal model counts cells, so every column it models needs a finite, public domain:
a categorical column its category list (declared or DP-estimated), a number its range
(declared or DP-estimated) cut into bins.  The bins come from the range alone (never
from the data): an integer range of at most ``EXACT_INTEGERS`` values gets one code
per value, anything wider ``DEFAULT_BINS`` equal-width bins unless the column sets
``bins``; a binned range that holds zero gives zero a bin of its own (integers: [0, 1); floats: an
edge at 0), since many numeric columns pile up there.  A nullable column has one more code for "missing".  Decoding draws a value
uniformly inside its bin (integers: a whole number in the bin; floats: rounded to the
column's ``decimals`` when given), which is post-processing of the model's output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from trainer.errors import ConfigError

from ..spec import ColumnSpec

EXACT_INTEGERS = 100
DEFAULT_BINS = 32


@dataclass
class ColumnCode:
    name: str
    type: str  # categorical, integer or float
    categories: list[str] | None = None
    edges: list[float] | None = None  # numbers: bin edges, len = bins + 1 (integers: [lo, hi + 1) cut)
    nullable: bool = False
    decimals: int | None = None

    @property
    def values_size(self) -> int:
        return len(self.categories) if self.categories is not None else len(self.edges) - 1

    @property
    def size(self) -> int:
        """Codes of this column: one per category or bin, and one for "missing" when nullable."""
        return self.values_size + int(self.nullable)

    def describe(self) -> str:
        if self.categories is not None:
            return f"{self.name}: {len(self.categories)} categories"
        return f"{self.name}: {self.values_size} bins on [{self.edges[0]:g}, {self.edges[-1]:g}]"

    def encode(self, values: pd.Series, *, source: str = "data") -> np.ndarray:
        """Codes of ``values`` (already checked against the spec's domain)."""
        missing = values.isna().to_numpy()
        codes = np.full(len(values), self.values_size, dtype=np.int64)  # the "missing" code
        present = values[~missing]
        if self.categories is not None:
            index = {c: i for i, c in enumerate(self.categories)}
            found = present.astype(str).map(index)
        else:
            x = present.astype(float).to_numpy()
            found = pd.Series(np.searchsorted(np.asarray(self.edges), x, side="right") - 1, index=present.index)
            outside = (x < self.edges[0]) | (x > self.edges[-1])
            found[outside] = np.nan
            found = found.clip(upper=self.values_size - 1)  # the range's upper end sits in the last bin
        if found.isna().any():
            row = found.index[found.isna()][0]
            raise ConfigError(f"{source}, row {row + 1}, column {self.name!r}: {values[row]!r} is outside the public "
                              "domain the column model was given (the domain check should have caught it)")
        if missing.any() and not self.nullable:
            row = values.index[missing][0]
            raise ConfigError(f"{source}, row {row + 1}, column {self.name!r}: missing value in a column that is not "
                              "nullable")
        codes[~missing] = found.to_numpy(dtype=np.int64)
        return codes

    def decode(self, codes: np.ndarray, rng: np.random.Generator) -> list:
        out: list = [None] * len(codes)
        for i, code in enumerate(np.asarray(codes, dtype=np.int64)):
            if code >= self.values_size:
                continue  # missing
            if self.categories is not None:
                out[i] = self.categories[code]
            elif self.type == "integer":
                lo, hi = math.ceil(self.edges[code]), math.ceil(self.edges[code + 1]) - 1
                out[i] = int(rng.integers(lo, hi + 1))
            else:
                v = float(rng.uniform(self.edges[code], self.edges[code + 1]))
                out[i] = round(v, self.decimals) if self.decimals is not None else v
        return out


def column_code(col: ColumnSpec) -> ColumnCode:
    """The coding of one spec column (its domain must be public by now: declared or DP-estimated)."""
    if col.type == "text":
        raise ConfigError(f"column {col.name!r} is text: the column model covers categorical and numeric columns")
    if col.type == "categorical":
        if not col.categories:
            raise ConfigError(f"column {col.name!r}: the column model needs its category list (declare categories, or "
                              "set estimate = true to measure it with DP)")
        return ColumnCode(col.name, col.type, categories=list(col.categories), nullable=col.nullable)
    if col.min is None or col.max is None:
        raise ConfigError(f"column {col.name!r}: the column model needs its range (declare min and max, or set "
                          "estimate = true to measure it with DP)")
    if col.type == "integer":
        lo, hi = math.ceil(col.min), math.floor(col.max)
        width = hi - lo + 1
        bins = col.bins or (width if width <= EXACT_INTEGERS else DEFAULT_BINS)
        bins = min(bins, width)  # every bin holds at least one whole number
        edges = np.unique(np.ceil(np.linspace(lo, hi + 1, bins + 1)))  # the same bins' whole numbers
        if len(edges) - 1 < width and lo <= 0 <= hi:
            edges = np.union1d(edges, [0, 1])  # zero, often a spike (no capital gain), gets a bin of its own
        edges = edges.tolist()
    else:
        edges = np.linspace(col.min, col.max, (col.bins or DEFAULT_BINS) + 1)
        if col.min < 0 < col.max:
            edges = np.union1d(edges, [0.0])  # no bin straddles zero: signs survive decoding
        edges = edges.tolist()
    return ColumnCode(col.name, col.type, edges=edges, nullable=col.nullable, decimals=col.decimals)


def column_codes(columns: list[ColumnSpec]) -> list[ColumnCode]:
    return [column_code(c) for c in columns]
