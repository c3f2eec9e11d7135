"""Load a private corpus: a table (CSV / JSONL / Parquet) with a text column, or a folder of
``.txt`` / ``.md`` files, one document each.  Errors name the file, row and column.

The result is a frame with the text column, the label columns (typed to their declared
domain) and, at user level, the user column; one row per document.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from evaluation.tables import DataError, load_table

from ..lm.text_spec import TextSpec
from ..loading import typed_frame

SUFFIXES = (".txt", ".md")


def load_corpus(path: str | Path, spec: TextSpec) -> pd.DataFrame:
    path = Path(path)
    if path.is_dir():
        return _load_folder(path, spec)
    raw = load_table(path)
    columns = [spec.text, *spec.label_names] + ([spec.user_column] if spec.user_column else []) + (
        [spec.context] if spec.context else [])
    missing = [c for c in columns if c not in raw.columns]
    if missing:
        raise DataError(f"{path}: column(s) {missing} named in the text spec are not in the data; the data has: "
                        f"{list(raw.columns)}")
    frame = typed_frame(raw, spec.domain_spec(), source=str(path))  # labels typed, missing values named by row
    empty = frame[spec.text].str.strip() == ""
    if empty.any():
        row = int(empty.idxmax())
        raise DataError(f"{path}, row {row + 1}, column {spec.text!r}: the document is empty; remove the row")
    return frame


def _load_folder(folder: Path, spec: TextSpec) -> pd.DataFrame:
    if spec.labels or spec.user_column or spec.context:
        raise DataError(f"{folder}: a folder of files has no label or user columns; give a table (CSV, JSONL, "
                        "Parquet) with those columns, or drop labels / use privacy_unit = \"document\"")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise DataError(f"{folder} holds no {' or '.join(SUFFIXES)} files")
    texts = []
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise DataError(f"{f}: not UTF-8 (byte {err.object[err.start]:#04x} at offset {err.start}); re-encode "
                            "the file as UTF-8") from None
        if not text.strip():
            raise DataError(f"{f}: the document is empty; remove the file")
        texts.append(text)
    return pd.DataFrame({spec.text: pd.array(texts, dtype="string")})
