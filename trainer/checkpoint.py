"""Checkpoints: trainable weights (safetensors), optimizer state and the privacy ledger.

Written atomically into ``<dir>/checkpoint-<step>``; the newest complete one is
what ``latest_checkpoint`` finds.  A secure run never saves its noise or
sampling generator state (it would let the noise be recomputed); a resumed run
draws fresh secure seeds.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .accounting import PrivacyLedger
from .io import atomic_directory

_NAME = re.compile(r"^checkpoint-(\d+)$")


def save_checkpoint(
    directory: str | Path,
    *,
    step: int,
    params: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    ledger: PrivacyLedger,
    state: dict,
) -> Path:
    target = Path(directory) / f"checkpoint-{step}"
    with atomic_directory(target) as tmp:
        save_file({n: p.detach().contiguous().cpu() for n, p in params.items()}, tmp / "trainable.safetensors")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        ledger.save(tmp / "privacy_ledger.json")
        extra = {k: v for k, v in state.items() if not isinstance(v, torch.Tensor)}
        tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
        if tensors:
            save_file(tensors, tmp / "rng_state.safetensors")
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **extra}, indent=2, sort_keys=True))
    return target


def latest_checkpoint(directory: str | Path) -> Path | None:
    directory = Path(directory)
    if not directory.is_dir():
        return None
    found = [
        (int(m.group(1)), p)
        for p in directory.iterdir()
        if (m := _NAME.match(p.name)) and (p / "trainer_state.json").exists()
    ]
    return max(found)[1] if found else None


def prune_checkpoints(directory: str | Path, *, keep: int) -> list[Path]:
    """Remove all but the newest ``keep`` complete checkpoints; returns what was removed."""
    directory = Path(directory)
    found = sorted((int(m.group(1)), p) for p in directory.iterdir()
                   if (m := _NAME.match(p.name)) and (p / "trainer_state.json").exists())
    removed = [p for _, p in found[: max(0, len(found) - keep)]]
    for p in removed:
        shutil.rmtree(p, ignore_errors=True)
    return removed


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Remove half-written checkpoint folders a killed run left behind (``.checkpoint-N.tmp-*``,
    ``.checkpoint-N.old-*``).  Call it only while holding the folder's lock (trainer.io.folder_lock)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.iterdir() if re.match(r"^\.checkpoint-\d+\.(tmp|old)-", p.name)]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


def load_checkpoint(path: str | Path, *, params: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer):
    """Load weights and optimizer state in place; return (ledger, state)."""
    path = Path(path)
    weights = load_file(path / "trainable.safetensors")
    missing = set(params) - set(weights)
    if missing:
        raise ValueError(f"checkpoint {path} lacks parameters: {sorted(missing)[:5]}")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(weights[n].to(p.device, p.dtype))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    state = json.loads((path / "trainer_state.json").read_text())
    rng = path / "rng_state.safetensors"
    if rng.exists():
        state.update(load_file(rng))
    return PrivacyLedger.load(path / "privacy_ledger.json"), state
