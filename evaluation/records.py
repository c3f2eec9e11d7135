"""Rows of a table -> record texts (what the grammar parses) and content texts (what is embedded).

The record text is the serialised row.  The content text is the row's values, one
per line, without the serialisation's keys and quotes: that syntax is identical in
every record, tells the encoder nothing, and would double its work (Water: 65 vs
35 word pieces per record).  Records given as text are embedded as they are.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .spec import EvalSpec
from .tables import DataError


@dataclass
class RecordSet:
    texts: list[str]  # serialised records, parsed by the grammar
    contents: list[str]  # embedded for KNN / FID / memorisation
    frame: pd.DataFrame  # the rows, for labels


def _is_missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _is_number_text(v: str) -> bool:
    try:
        return math.isfinite(float(v))
    except ValueError:
        return False


def numeric_columns(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """Columns whose every present value is a finite number (typed, or text that reads as one)."""
    out = []
    for c in columns:
        values = [v for v in frame[c].tolist() if not _is_missing(v)]
        if values and all(
            (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))
            or (isinstance(v, str) and _is_number_text(v))
            for v in values
        ):
            out.append(c)
    return out


def _literal(v: Any, numeric: bool, spec: EvalSpec) -> str:
    if _is_missing(v):
        return spec.missing
    if numeric and isinstance(v, str) and _is_number_text(v):
        return v.strip()  # as written: "4.0" stays "4.0"
    if numeric and isinstance(v, (int, float)) and not isinstance(v, bool):
        return repr(v.item() if hasattr(v, "item") else v)
    text = str(v)
    return json.dumps(text, ensure_ascii=False) if spec.serialization == "json" else repr(text)


def serialize_row(row: dict[str, Any], columns: list[str], numeric: set[str], spec: EvalSpec) -> str:
    if spec.serialization == "json":
        body = ", ".join(f"{json.dumps(c, ensure_ascii=False)}: {_literal(row[c], c in numeric, spec)}" for c in columns)
    else:
        body = ", ".join(f"{c!r}: {_literal(row[c], c in numeric, spec)}" for c in columns)
    return "{" + body + "}"


def content_text(row: dict[str, Any], columns: list[str]) -> str:
    return "\n".join("" if _is_missing(row[c]) else str(row[c]) for c in columns)


def build_records(frame: pd.DataFrame, spec: EvalSpec, numeric: list[str], *, source: str) -> RecordSet:
    """The record texts of ``frame``; ``numeric`` comes from the real data so both sides are written alike."""
    needed = [spec.text_column] if spec.text_column else list(spec.columns)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(f"{source}: column(s) {missing} are not in the data; it has: {list(frame.columns)}")
    rows = frame.to_dict("records")
    if spec.text_column:
        texts = ["" if _is_missing(r[spec.text_column]) else str(r[spec.text_column]) for r in rows]
        return RecordSet(texts, texts, frame)
    num = set(numeric)
    texts = [serialize_row(r, spec.columns, num, spec) for r in rows]
    return RecordSet(texts, [content_text(r, spec.columns) for r in rows], frame)


def features_without(frame: pd.DataFrame, spec: EvalSpec, label: str) -> list[str]:
    """Content texts without the label column, so a classifier cannot read the answer."""
    if spec.text_column:
        return ["" if _is_missing(v) else str(v) for v in frame[spec.text_column].tolist()]
    columns = [c for c in spec.columns if c != label]
    return [content_text(r, columns) for r in frame.to_dict("records")]
