"""Image files on disk, shared by the image and album rooms: reading one image, JSON-lines metadata,
PNG encoding, and the ``imagefolder`` (the Hugging Face convention): image files, with

* one sub-folder per class when the images are labelled by folder, or
* a ``metadata.jsonl`` / ``metadata.csv`` beside them with ``file_name`` and per-image fields
  (a caption in ``text``, a class, a user id...).

Images become (C, H, W) tensors in [-1, 1] at the requested size.  Every problem names the file
(and the metadata line) and what to do; no image is skipped silently.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from evaluation.tables import DataError

SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def read_image(path: Path, *, size: int, channels: int, where: str | None = None) -> torch.Tensor:
    """One image file as a (C, H, W) tensor in [-1, 1] at ``size`` px; errors name ``where`` (a metadata
    line) when given."""
    from PIL import Image, UnidentifiedImageError

    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise DataError(f"channels must be 1 or 3, got {channels}")
    prefix = f"{where}: " if where else ""
    if not path.is_file():
        raise DataError(f"{prefix}image {path} does not exist")
    try:
        with Image.open(path) as im:
            im = im.convert(mode).resize((size, size), Image.Resampling.BICUBIC)
            arr = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"{prefix}{path}: not a readable image ({err})" if not where else
                        f"{prefix}{path} is not a readable image ({err})") from None
    return torch.from_numpy(arr if arr.ndim == 3 else arr[..., None]).permute(2, 0, 1).contiguous()


def png_bytes(image: torch.Tensor) -> bytes:
    """A (C, H, W) tensor in [-1, 1] as PNG file contents."""
    from PIL import Image

    arr = ((image.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr.squeeze(-1) if arr.shape[-1] == 1 else arr).save(buf, format="PNG")
    return buf.getvalue()


def jsonl_objects(path: Path) -> Iterator[tuple[str, dict]]:
    """(``"<path>, line N"``, object) for each non-blank line; a line that is not a JSON object is an error."""
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}, line {i}: not JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}, line {i}: a line must be a JSON object")
        yield f"{path}, line {i}", row


@dataclass
class ImageFolder:
    images: list[torch.Tensor]
    files: list[Path]
    classes: list[str] | None  # per image, from sub-folders (None: no class folders)
    metadata: list[dict] | None  # per image, from metadata.jsonl / .csv (None: no metadata file)

    def field(self, name: str, source: Path) -> list[str]:
        """One metadata field per image, as text; a missing or empty value is an error naming the file."""
        if self.metadata is None:
            raise DataError(f"{source}: no metadata.jsonl or metadata.csv with a {name!r} field (file_name, "
                            f"{name}) beside the images")
        out = []
        for f, row in zip(self.files, self.metadata, strict=True):
            value = row.get(name)
            if value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == "":
                raise DataError(f"{source}: {f.name} has no {name!r} in the metadata")
            out.append(str(value))
        return out


def _read_metadata(folder: Path) -> dict[str, dict] | None:
    jsonl, csv = folder / "metadata.jsonl", folder / "metadata.csv"
    if jsonl.is_file() and csv.is_file():
        raise DataError(f"{folder}: both metadata.jsonl and metadata.csv; keep one")
    rows: list[tuple[str, dict]] = []
    if jsonl.is_file():
        for where, row in jsonl_objects(jsonl):
            if not isinstance(row.get("file_name"), str):
                raise DataError(f"{where}: needs a \"file_name\" string")
            rows.append((where, row))
    elif csv.is_file():
        import pandas as pd

        frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
        if "file_name" not in frame.columns:
            raise DataError(f"{csv}: needs a file_name column")
        rows = [(f"{csv}, line {i + 2}", dict(r)) for i, r in enumerate(frame.to_dict("records"))]
    else:
        return None
    by_file: dict[str, dict] = {}
    for where, row in rows:
        name = str(Path(row["file_name"]))
        if name in by_file:
            raise DataError(f"{where}: {row['file_name']} is listed twice")
        by_file[name] = row
    return by_file


def load_image_folder(folder: str | Path, *, size: int, channels: int = 3) -> ImageFolder:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise DataError(f"{folder} holds no images ({', '.join(SUFFIXES)})")
    metadata = _read_metadata(folder)
    classes = None
    if metadata is not None:
        listed = {str(p.relative_to(folder)) for p in files}
        missing = sorted(set(metadata) - listed)
        if missing:
            raise DataError(f"{folder}: the metadata lists {len(missing)} image(s) that are not there, e.g. {missing[0]}")
        unlisted = sorted(listed - set(metadata))
        if unlisted:
            raise DataError(f"{folder}: {len(unlisted)} image(s) have no metadata line, e.g. {unlisted[0]}: add "
                            "them to the metadata or move them out")
    else:
        top = [p for p in files if p.parent == folder]
        if top and len(top) != len(files):
            raise DataError(f"{folder}: some images sit in sub-folders (classes) and {len(top)} directly in it; put "
                            "every image in a class folder, or none")
        classes = None if top else [p.relative_to(folder).parts[0] for p in files]
    images = [read_image(p, size=size, channels=channels) for p in files]
    meta = [metadata[str(p.relative_to(folder))] for p in files] if metadata is not None else None
    return ImageFolder(images, files, classes, meta)
