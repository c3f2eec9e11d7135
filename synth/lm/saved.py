"""The generator folder every LM generator writes and reads (``save_pretrained`` / ``from_pretrained``).

    <folder>/model/                  the trained model (a full model or a LoRA adapter) + its tokenizer
    <folder>/dpsynth_config.json     kind, spec, model choice, description (+ the generator's own facts)
    <folder>/privacy_ledger.json     what training (and every other paid stage) spent
    <folder>/conditioning.json       the label / conditioning distribution used at generation, if any
    <folder>/column_model/           or the DP column model the conditioning columns are drawn from
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from trainer import PrivacyLedger

from ..conditioning import ConditioningDistribution
from .roads import ModelChoice, load_trained


def write_generator(tmp: Path, generator, kind: str, **extra: Any) -> None:
    """Write ``generator`` (model, tokenizer, choice, spec, ledger, conditioning) into the folder ``tmp``."""
    generator.model.save_pretrained(tmp / "model")
    if generator.tokenizer.kind == "hf":
        generator.tokenizer.backend.save_pretrained(tmp / "model")
    meta = {"kind": kind, "spec": asdict(generator.spec), "model": asdict(generator.choice),
            "model_description": generator.model_description, **extra}
    (tmp / "dpsynth_config.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    if hasattr(generator.conditioning, "save_pretrained"):  # a column model (synth.marginals)
        generator.conditioning.save_pretrained(tmp / "column_model")
    elif generator.conditioning is not None:
        (tmp / "conditioning.json").write_text(json.dumps(generator.conditioning.to_dict(), indent=2))
    if generator.ledger is not None:
        generator.ledger.save(tmp / "privacy_ledger.json")


def read_generator(directory: str | Path, kind: str) -> tuple[dict, ModelChoice, tuple, PrivacyLedger | None,
                                                              ConditioningDistribution | None]:
    """(meta, model choice, (model, tokenizer, description), ledger, conditioning) of a saved generator."""
    directory = Path(directory)
    meta_path = directory / "dpsynth_config.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{directory} is not a saved dpsynth generator (no dpsynth_config.json)")
    meta = json.loads(meta_path.read_text())
    if meta.get("kind") != kind:
        raise ValueError(f"{meta_path}: kind {meta.get('kind')!r} is not {kind!r}")
    choice = ModelChoice(**meta["model"])
    model, tok, _ = load_trained(choice, directory / "model")
    ledger = PrivacyLedger.load(directory / "privacy_ledger.json") if (directory / "privacy_ledger.json").exists() else None
    conditioning = None
    if (directory / "column_model").is_dir():
        from ..marginals import ColumnModel

        conditioning = ColumnModel.from_pretrained(directory / "column_model")
    elif (directory / "conditioning.json").exists():
        conditioning = ConditioningDistribution.from_dict(json.loads((directory / "conditioning.json").read_text()))
    return meta, choice, (model, tok, meta["model_description"]), ledger, conditioning
