"""Read an ``imagefolder`` (the Hugging Face convention): image files, and one sub-folder per class
when the images are labelled.  Images become (C, H, W) tensors in [-1, 1] at the requested size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from evaluation.tables import DataError

SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def load_image_folder(folder: str | Path, *, size: int, channels: int = 3) -> tuple[list[torch.Tensor], list[str] | None]:
    """(images, class names per image or None).  Classes are the names of the first-level sub-folders
    when every image sits in one; images directly in ``folder`` mean no labels."""
    from PIL import Image, UnidentifiedImageError

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise DataError(f"{folder} holds no images ({', '.join(SUFFIXES)})")
    top = [p for p in files if p.parent == folder]
    if top and len(top) != len(files):
        raise DataError(f"{folder}: some images sit in sub-folders (classes) and {len(top)} directly in it; put "
                        "every image in a class folder, or none")
    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise DataError(f"channels must be 1 or 3, got {channels}")
    images = []
    for p in files:
        try:
            with Image.open(p) as im:
                im = im.convert(mode).resize((size, size), Image.Resampling.BICUBIC)
                arr = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
        except (UnidentifiedImageError, OSError) as err:
            raise DataError(f"{p}: not a readable image ({err})") from None
        images.append(torch.from_numpy(arr if arr.ndim == 3 else arr[..., None]).permute(2, 0, 1).contiguous())
    labels = None if top else [p.relative_to(folder).parts[0] for p in files]
    return images, labels
