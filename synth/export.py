"""Write the synthetic table with its card: README.md (for people) and dpsynth.json (for programs).

The export folder is what a user shares.  It holds only synthetic rows and
statements about how they were made; anything computed from the private data
without DP (e.g. how many synthetic rows equal a training row) goes to the run
folder's report instead, never here.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd

from trainer.errors import ConfigError
from trainer.io import atomic_directory

from .card import hub_card_header, hub_push_note, render_card

FORMATS = ("csv", "jsonl", "parquet", "hf")  # hf: a Hugging Face `datasets` folder (save_to_disk)
HF_FOLDER = "dataset"


def data_file_name(fmt: str) -> str:
    return f"{HF_FOLDER}/" if fmt == "hf" else f"synthetic.{fmt}"


def software_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("dpsynth")
    except PackageNotFoundError:
        v = "unknown"
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{v}+{sha}" if sha else v


def write_table(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    if fmt == "csv":
        # "\r\n" line ends make the csv writer quote every field holding a CR or LF: with "\n" alone a
        # bare CR went unquoted and split one record into two when read back
        frame.to_csv(path, index=False, lineterminator="\r\n")
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    elif fmt == "parquet":
        frame.to_parquet(path, index=False)
    elif fmt == "hf":
        from datasets import Dataset

        Dataset.from_pandas(frame, preserve_index=False).save_to_disk(str(path))
    else:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")


def export(frame: pd.DataFrame, out_dir: str | Path, *, fmt: str, card: dict[str, Any], overwrite: bool = False) -> Path:
    """Atomically write ``synthetic.<fmt>``, ``dpsynth.json`` and ``README.md`` into ``out_dir``."""
    out_dir = Path(out_dir)
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if out_dir.exists() and not overwrite:
        raise ConfigError(f"output folder {out_dir} exists; pass --overwrite to replace it")
    card = {**card, "rows": len(frame), "data_file": data_file_name(fmt), "software_version": software_version()}
    with atomic_directory(out_dir) as tmp:
        write_table(frame, tmp / data_file_name(fmt).rstrip("/"), fmt)
        (tmp / "dpsynth.json").write_text(json.dumps(card, indent=2, sort_keys=True, default=str))
        readme = render_card(card)
        if fmt == "hf":
            readme = hub_card_header(card) + readme + hub_push_note(out_dir / HF_FOLDER, out_dir / "README.md")
        (tmp / "README.md").write_text(readme)
    return out_dir


def export_imagefolder(frame: pd.DataFrame, out_dir: str | Path, *, card: dict[str, Any], overwrite: bool = False
                       ) -> Path:
    """Atomically write an imagefolder (Hugging Face layout): ``images/NNNNNN.png`` from the frame's
    ``png`` bytes, ``metadata.jsonl`` (``file_name`` and the frame's other columns), the card."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise ConfigError(f"output folder {out_dir} exists; pass --overwrite to replace it")
    card = {**card, "rows": len(frame), "data_file": "metadata.jsonl + images/", "software_version": software_version()}
    fields = [c for c in frame.columns if c != "png"]
    with atomic_directory(out_dir) as tmp:
        (tmp / "images").mkdir()
        lines = []
        for i, row in enumerate(frame.itertuples(index=False)):
            name = f"images/{i:06d}.png"
            (tmp / name).write_bytes(row.png)
            lines.append(json.dumps({"file_name": name, **{f: getattr(row, f) for f in fields}}, ensure_ascii=False))
        (tmp / "metadata.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (tmp / "dpsynth.json").write_text(json.dumps(card, indent=2, sort_keys=True, default=str))
        (tmp / "README.md").write_text(render_card(card))
    return out_dir
