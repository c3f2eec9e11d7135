"""Load the private data set (CSV, JSONL, Parquet) and check it against the spec.

Errors name the file, the row or the column, and what to do.  Nothing about the
data leaves this module except the typed frame the generator trains on.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from evaluation.tables import DataError, load_table
from trainer.errors import ConfigError

from .spec import DatasetSpec

__all__ = ["DataError", "check_spec_matches", "load_table", "typed_frame"]


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
