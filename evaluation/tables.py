"""Read a data file (CSV, JSONL, Parquet) into a frame; errors name the file and the line.

Shared by the evaluator (which scores files) and by ``synth`` (which trains on one).
CSV cells are read as text: a missing cell is NA, every other value keeps its exact
spelling (``4.0`` stays ``4.0``); typing is the caller's job.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from trainer.errors import DPSynthError

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


class DataError(DPSynthError, ValueError):
    """A data file cannot be used as given."""


def load_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if path.is_dir() and (path / "dataset_info.json").is_file() and (path / "state.json").is_file():
        from datasets import load_from_disk  # a Hugging Face `datasets` folder (save_to_disk)

        frame = load_from_disk(str(path)).to_pandas()
        if len(frame) == 0:
            raise DataError(f"{path} holds no rows")
        return frame
    if path.is_dir():
        raise DataError(f"{path} is a folder; give the data file itself (.csv, .jsonl or .parquet) or a Hugging "
                        "Face datasets folder (save_to_disk)")
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unknown data format {path.suffix!r}; use one of {', '.join(sorted(FORMATS))}")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as err:
        raise DataError(f"{path}: cannot read the file ({err.strerror or err}); check its permissions") from None
    if head == b"PAR1" and fmt != "parquet":
        raise DataError(f"{path} is a Parquet file but is named {path.suffix!r}; rename it to .parquet")
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
    except OSError as err:
        raise DataError(f"{path}: cannot read the file ({err.strerror or err})") from None
    except Exception as err:
        if fmt != "parquet":
            raise
        # pyarrow's errors (ArrowInvalid, ...): a file named .parquet that is not one, or is damaged
        raise DataError(f"{path}: not a readable Parquet file ({type(err).__name__}: {str(err)[:160]})") from None
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
