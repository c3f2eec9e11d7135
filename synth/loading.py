"""Load the private data set (CSV, JSONL, Parquet) and check it against the spec.

Errors name the file, the row or the column, and what to do.  Nothing about the
data leaves this module except the typed frame the generator trains on.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from trainer.errors import ConfigError, DPSynthError

from .spec import DatasetSpec

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


class DataError(DPSynthError, ValueError):
    """The private data cannot be used as given."""


def load_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unknown data format {path.suffix!r}; use one of {', '.join(sorted(FORMATS))}")
    if fmt in ("csv", "jsonl"):
        _check_utf8(path)
    try:
        if fmt == "csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        elif fmt == "jsonl":
            frame = _read_jsonl(path)
        else:
            frame = pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty") from None
    except pd.errors.ParserError as err:
        raise DataError(f"{path}: {err}") from None
    if len(frame) == 0:
        raise DataError(f"{path} has a header but no rows")
    return frame


def _check_utf8(path: Path) -> None:
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(
                    f"{path}, line {lineno}: not UTF-8 (byte {line[err.start]:#04x} at column {err.start + 1}); "
                    "re-encode the file as UTF-8"
                ) from None


def _read_jsonl(path: Path) -> pd.DataFrame:
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}, line {lineno}: invalid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}, line {lineno}: each line must be a JSON object")
            rows.append(row)
    return pd.DataFrame(rows)


def typed_frame(frame: pd.DataFrame, spec: DatasetSpec, *, source: str = "data") -> pd.DataFrame:
    """The spec's columns (plus the user column), converted to the spec's types."""
    wanted = spec.names + ([spec.privacy_unit] if spec.privacy_unit != "example" else [])
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise DataError(
            f"{source}: column(s) {missing} named in the spec are not in the data; "
            f"the data has: {list(frame.columns)}"
        )
    out = pd.DataFrame(index=frame.index)
    for col in spec.columns:
        values = frame[col.name]
        if col.type in ("integer", "float"):
            num = pd.to_numeric(values, errors="coerce")
            bad = values.notna() & num.isna()
            if bad.any():
                row = int(bad.idxmax())
                raise DataError(f"{source}, row {row + 1}, column {col.name!r}: {values[row]!r} is not a number")
            if col.type == "integer":
                if (num.dropna() % 1 != 0).any():
                    row = int((num % 1 != 0).idxmax())
                    raise DataError(f"{source}, row {row + 1}, column {col.name!r}: {values[row]!r} is not an integer")
                num = num.astype("Int64")
            out[col.name] = num
        else:
            out[col.name] = values.astype("string")
        if not col.nullable and out[col.name].isna().any():
            row = int(out[col.name].isna().idxmax())
            raise DataError(
                f"{source}, row {row + 1}, column {col.name!r}: the value is missing; "
                "declare the column nullable: true, or clean the data"
            )
    if spec.privacy_unit != "example":
        out[spec.privacy_unit] = frame[spec.privacy_unit].astype("string")
    return out


def check_spec_matches(spec: DatasetSpec) -> None:
    if spec.grammar is not None and not Path(spec.grammar).is_file():
        raise ConfigError(f"grammar file {spec.grammar} does not exist")
