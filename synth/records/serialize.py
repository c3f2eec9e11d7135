"""One record <-> one canonical text.

``json``: a JSON object with the spec's columns in order (``ensure_ascii=False``).
``dict``: a Python dict literal, as Struct-Bench serialises its data sets
(``{'title': 'Good', 'overall_rating': 4.0}``); parsed with ``ast.literal_eval``.
Missing values are ``null`` / ``None``.  The round trip is exact: floats use
``repr`` (shortest text that reads back to the same float).
"""

from __future__ import annotations

import ast
import json
import math
from typing import Any

import pandas as pd

from ..spec import ColumnSpec, DatasetSpec


class RecordParseError(ValueError):
    """A text is not a well-formed record of the spec."""


def _value(col: ColumnSpec, v: Any) -> Any:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    if col.type == "integer":
        return int(v)
    if col.type == "float":
        return float(v)
    return str(v)


def _dict_literal(v: Any) -> str:
    return "None" if v is None else repr(v)


def serialize(record: dict[str, Any], spec: DatasetSpec, columns: list[str] | None = None) -> str:
    """The canonical text of ``record`` (only ``columns``, default all, in spec order)."""
    names = spec.names if columns is None else [n for n in spec.names if n in columns]
    values = {n: _value(spec.column(n), record[n]) for n in names}
    if spec.serialization == "json":
        return json.dumps(values, ensure_ascii=False)
    return "{" + ", ".join(f"{n!r}: {_dict_literal(v)}" for n, v in values.items()) + "}"


def serialize_value(record: dict[str, Any], spec: DatasetSpec, name: str) -> str:
    """The text ``serialize`` writes for column ``name``'s value (what follows its key)."""
    v = _value(spec.column(name), record[name])
    return json.dumps(v, ensure_ascii=False) if spec.serialization == "json" else _dict_literal(v)


def parse(text: str, spec: DatasetSpec) -> dict[str, Any]:
    """The typed record of a canonical text; RecordParseError says what is wrong."""
    try:
        obj = json.loads(text) if spec.serialization == "json" else ast.literal_eval(text)
    except (ValueError, SyntaxError, json.JSONDecodeError) as err:
        raise RecordParseError(f"not a {spec.serialization} record: {err}") from None
    if not isinstance(obj, dict):
        raise RecordParseError("the record is not an object / dict")
    if list(obj) != spec.names:
        raise RecordParseError(f"keys {list(obj)} differ from the spec's {spec.names}")
    out = {}
    for col in spec.columns:
        v = obj[col.name]
        if v is None:
            if not col.nullable:
                raise RecordParseError(f"{col.name} is null but the column is not nullable")
            out[col.name] = None
            continue
        ok = {
            "text": isinstance(v, str),
            "categorical": isinstance(v, str),
            "integer": isinstance(v, int) and not isinstance(v, bool),
            "float": isinstance(v, (int, float)) and not isinstance(v, bool),
        }[col.type]
        if not ok:
            raise RecordParseError(f"{col.name}={v!r} is not of type {col.type}")
        if col.type == "float":
            v = float(v)
            # ranges the grammar can only bound loosely (fractional or negative bounds) are clamped
            v = v if col.min is None else max(col.min, v)
            v = v if col.max is None else min(col.max, v)
        elif col.type == "integer" and ((col.min is not None and v < col.min) or (col.max is not None and v > col.max)):
            raise RecordParseError(f"{col.name}={v} is outside the declared range [{col.min}, {col.max}]")
        out[col.name] = v
    return out


def frame_to_texts(frame: pd.DataFrame, spec: DatasetSpec, columns: list[str] | None = None) -> list[str]:
    return [serialize(r, spec, columns) for r in frame.to_dict("records")]


def texts_to_frame(records: list[dict[str, Any]], spec: DatasetSpec) -> pd.DataFrame:
    """Typed columns with the spec's dtypes (nullable Int64, float64, string)."""
    frame = pd.DataFrame(records, columns=spec.names)
    for col in spec.columns:
        dtype = {"integer": "Int64", "float": "float64"}.get(col.type, "string")
        frame[col.name] = frame[col.name].astype(dtype)
    return frame
