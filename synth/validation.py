"""Check the private rows against the spec's domain before training.

A value outside the declared domain (a rating of 9 against [1, 5], a category not in the
list, inf, a 50 kB cell against ``max_chars = 60``) would be trained on silently and could
make one row cost gigabytes of tokens.  Policy (``data.invalid_rows``):

* ``error`` (default): abort, with the count per column and three examples;
* ``drop``: train without those rows;
* ``clip``: truncate long texts, clamp numbers into [min, max]; a row that cannot be clipped
  (a category not in the list, inf with no declared bound) is dropped.

Domains that were *estimated* with DP (``estimate = true``) are not the user's to fix: rows
outside them are always clipped (a records run's category below the DP list's threshold becomes
``(other)``, which such a list always holds) or dropped.  The counts are statistics of the private data,
not DP: they go to the console and the run folder's report, never to the export.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from evaluation.tables import DataError

from .domains import OTHER_CATEGORY
from .spec import ColumnSpec, DatasetSpec


@dataclass
class DomainReport:
    rows: int  # rows checked
    invalid: dict[str, int] = field(default_factory=dict)  # column -> rows outside its domain
    dropped: int = 0
    clipped: int = 0
    policy: str = "error"

    def to_dict(self) -> dict:
        return {"rows_checked": self.rows, "outside_domain_by_column": self.invalid, "rows_dropped": self.dropped,
                "rows_clipped": self.clipped, "policy": self.policy}

    def summary(self) -> str:
        if not self.invalid:
            return f"all {self.rows} private rows are inside the spec's domain"
        cols = ", ".join(f"{c}: {n}" for c, n in self.invalid.items())
        return (f"private rows outside the spec's domain ({cols}): {self.dropped} dropped, {self.clipped} clipped "
                f"(data.invalid_rows = {self.policy}; not DP: kept in the run folder)")


def _outside(col: ColumnSpec, values: pd.Series, *, other: bool = False) -> tuple[pd.Series, pd.Series]:
    """(outside the domain, fixable by clipping) masks over the non-missing values.  ``other``: a
    category not in the list is fixable (it becomes OTHER_CATEGORY)."""
    present = values.notna()
    if col.type in ("integer", "float"):
        num = values.astype("float64")
        lo, hi = _bounds(col)
        outside = ~np.isfinite(num) | (num < lo) | (num > hi)
        bad = present & outside
        return bad, bad & np.isfinite(num.clip(lower=lo, upper=hi))
    lengths = values.str.len()
    too_long = present & (lengths > col.max_chars)
    if col.type == "categorical" and col.categories is not None:
        unknown = present & ~values.isin(col.categories)
        return unknown | too_long, (too_long | unknown) if other else too_long & ~unknown
    return too_long, too_long


def _clip(col: ColumnSpec, values: pd.Series, mask: pd.Series) -> pd.Series:
    out = values.copy()
    if col.type in ("integer", "float"):
        num = out.astype("float64")
        lo, hi = _bounds(col)
        num[mask] = num[mask].clip(lower=lo, upper=hi)
        return num.astype(values.dtype) if col.type == "integer" else num
    if col.type == "categorical" and OTHER_CATEGORY in (col.categories or []):
        out[mask & ~values.isin(col.categories)] = OTHER_CATEGORY
    out[mask] = out[mask].str.slice(0, col.max_chars)
    return out


def check_domain(frame: pd.DataFrame, spec: DatasetSpec, *, policy: str, estimated: set[str] = frozenset(),
                 source: str = "data") -> tuple[pd.DataFrame, DomainReport]:
    """The rows to train on, and what was found.  ``estimated``: columns whose domain came from a DP
    estimate (clipped or dropped whatever the policy)."""
    report = DomainReport(rows=len(frame), policy=policy)
    drop = pd.Series(False, index=frame.index)
    clip_masks: dict[str, pd.Series] = {}
    problems = []
    for col in spec.columns:
        other = col.name in estimated and OTHER_CATEGORY in (col.categories or [])
        bad, fixable = _outside(col, frame[col.name], other=other)
        if not bad.any():
            continue
        report.invalid[col.name] = int(bad.sum())
        col_policy = "clip" if col.name in estimated else policy  # a DP domain is not the user's to fix
        if col_policy == "error":
            problems.append((col, bad))
        elif col_policy == "drop":
            drop |= bad
        else:
            drop |= bad & ~fixable
            clip_masks[col.name] = fixable
    if problems:
        lines = []
        for col, bad in problems:
            rows = list(bad[bad].index[:3])
            shown = "; ".join(f"row {r + 1}: {_show(frame.at[r, col.name])}" for r in rows)
            lines.append(f"  column {col.name!r} ({_domain(col)}): {int(bad.sum())} rows, e.g. {shown}")
        raise DataError(
            f"{source}: private rows outside the spec's declared domain:\n" + "\n".join(lines) + "\n"
            "Fix the data or the spec, or set data.invalid_rows = \"drop\" (train without them) or \"clip\" "
            "(truncate texts, clamp numbers)."
        )
    out = frame.copy()
    clipped = pd.Series(False, index=frame.index)
    for name, mask in clip_masks.items():
        mask = mask & ~drop
        out[name] = _clip(spec.column(name), out[name], mask)
        clipped |= mask
    report.dropped, report.clipped = int(drop.sum()), int(clipped.sum())
    out = out[~drop]
    if len(out) == 0:
        raise DataError(f"{source}: every one of the {len(frame)} private rows is outside the spec's domain; "
                        "nothing is left to train on")
    return out, report


def _bounds(col: ColumnSpec) -> tuple[float, float]:
    lo = -math.inf if col.min is None else (math.ceil(col.min) if col.type == "integer" else col.min)
    hi = math.inf if col.max is None else (math.floor(col.max) if col.type == "integer" else col.max)
    return lo, hi


def _domain(col: ColumnSpec) -> str:
    if col.type in ("integer", "float"):
        return f"finite, in [{col.min}, {col.max}]"
    if col.type == "categorical" and col.categories is not None:
        return f"one of {len(col.categories)} declared categories, at most {col.max_chars} characters"
    return f"at most {col.max_chars} characters"


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:50]}... ({len(str(value))} characters)"
