"""The ``dpsynth_config.json`` every saved generator folder carries: what kind of generator it is."""

from __future__ import annotations

import json
from pathlib import Path


def read_meta(directory: str | Path, kind: str) -> dict | None:
    """The folder's saved config, or None when it has none or it belongs to another kind of generator."""
    path = Path(directory) / "dpsynth_config.json"
    if not path.is_file():
        return None
    meta = json.loads(path.read_text())
    return meta if meta.get("kind") == kind else None
