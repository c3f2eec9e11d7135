"""train -> generate -> export for an imagefolder: the library functions behind `dpsynth run` with an
``[images]`` config.

The run folder is the other roads' (``synth.run_folder``): one runner at a time, checkpoints that
resume, the class histogram paid once and kept, generation in saved parts that resume.  Optional
non-private pretraining on PUBLIC images comes first (its own checkpoints; no ledger stage: it
reads no private data).  The export is an imagefolder (``images/*.png`` + ``metadata.jsonl``) with
the card; statistics of the private images stay in the run folder.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.tables import DataError
from trainer import PrivacyLedger
from trainer.errors import ConfigError, DPSynthError
from trainer.io import atomic_write_text
from trainer.seeds import seeded_torch

from ..card import privacy_block
from ..diffusion import ImageGenerator
from ..export import export_imagefolder
from ..image_files import load_image_folder, png_bytes
from ..run_config import SynthConfig
from ..run_folder import (
    conditioning_distribution,
    generator_fingerprint,
    load_saved_generator,
    refuse_existing_export,
    resumable_sample,
    run_folder,
    saved_generator_path,
)
from .spec import CLASS_COLUMN


def _public_facts(config: SynthConfig, n_public: int | None) -> list[str]:
    spec = config.images
    facts = []
    if spec.classes is not None:
        facts.append(f"class list: {spec.classes}")
    if spec.class_weights is not None:
        facts.append(f"class distribution: {spec.class_weights}")
    if spec.prompts:
        facts.append(f"generation prompts: {spec.prompts}")
    if spec.public_images:
        facts.append(f"public pretraining images: {spec.public_images} ({n_public} images, {spec.pretrain_steps} "
                     "steps without noise)")
    if config.model.captions:
        facts.append("caption encoder (frozen): " + (config.model.caption_encoder or "all-MiniLM-L6-v2"))
    return facts


def _labels(config: SynthConfig, folder, source: Path) -> list[str] | None:
    spec = config.images
    if spec.conditioning == "caption":
        return folder.field(spec.caption_column, source)
    if spec.conditioning == "class":
        labels = folder.classes if folder.classes is not None else folder.field(spec.class_column, source)
        unknown = sorted(set(labels) - set(spec.classes))
        if unknown:
            raise DataError(f"{source}: classes {unknown[:5]} are not in images.classes {spec.classes}: declare them "
                            "or move those images out")
        return labels
    return None


def _load(config: SynthConfig, path: str):
    c = config.model
    folder = load_image_folder(path, size=c.image_size, channels=c.channels)
    return folder, _labels(config, folder, Path(path))


def _pretrain(config: SynthConfig, generator: ImageGenerator, progress: bool) -> int:
    spec = config.images
    public, labels = _load(config, spec.public_images)
    generator.pretrain_public(public.images, labels, config.train, steps=spec.pretrain_steps, progress=progress,
                              output_dir=Path(config.output.dir) / "pretrain_checkpoints")
    return len(public.images)


def train(config: SynthConfig, *, progress: bool = True) -> tuple[ImageGenerator, object]:
    with run_folder(config):
        return _train(config, progress=progress)


def _train(config: SynthConfig, *, progress: bool):
    spec, run_dir = config.images, Path(config.output.dir)
    folder, labels = _load(config, config.data.path)
    with seeded_torch(config.train.seed, "model_init"):  # the same initial UNet for a seeded run
        generator = ImageGenerator(config.model)
    users = folder.field(spec.user_field, Path(config.data.path)) if spec.user_field else None
    n_public = _pretrain(config, generator, progress) if spec.pretrain_steps else None
    n_units = len(set(users)) if users else len(folder.images)
    ledger = PrivacyLedger(delta=config.train.resolve_delta(n_units), accountant=config.train.accountant,
                           privacy_unit="user" if users else "image", declared_public=_public_facts(config, n_public),
                           n_units=n_units)
    if spec.conditioning == "class":
        frame = pd.DataFrame({CLASS_COLUMN: labels})
        generator.conditioning = conditioning_distribution(config, frame, users, ledger)
    train_config = dataclasses.replace(config.train, progress=progress and config.train.progress, delta=ledger.delta)
    if users:  # all of a user's images are one unit, at most k of them per step
        train_config = dataclasses.replace(train_config, privacy_unit="user",
                                           max_examples_per_user=spec.max_images_per_user)
    generator.fit(folder.images, train_config, labels=labels, units=users, output_dir=run_dir / "checkpoints",
                  ledger=ledger)
    report = {"note": "NOT differentially private: statistics of the private images, do not publish",
              "images_read": len(folder.images), "units": n_units}
    if users:
        from collections import Counter

        per_user = Counter(users)
        report["users_over_bound"] = sum(c > spec.max_images_per_user for c in per_user.values())
        report["most_images_of_a_user"] = max(per_user.values())
    atomic_write_text(run_dir / "data_report.json", json.dumps(report, indent=2, sort_keys=True))
    generator.save_pretrained(run_dir / "generator")
    return generator, folder


def generate_and_export(config: SynthConfig, generator: ImageGenerator, *, progress: bool = True) -> dict:
    from ..lm.decoding import SampleStats

    g, spec, run_dir = config.generate, config.images, Path(config.output.dir)
    prompts = spec.read_prompts() if spec.conditioning == "caption" else None
    if spec.conditioning == "class" and generator.conditioning is None:
        raise ConfigError(f"{run_dir / 'generator'} has no class distribution: train it again with this config")

    def sample(count: int, seed: int | None, start: int):
        import time

        t0 = time.time()
        kw, column = {}, {}
        if prompts is not None:
            kw["captions"] = [prompts[(start + i) % len(prompts)] for i in range(count)]
            column = {"text": kw["captions"]}
        elif spec.conditioning == "class":
            draws = generator.conditioning.sample(count, np.random.default_rng(seed))
            kw["classes"] = [d[0] for d in draws]
            column = {"label": kw["classes"]}
        images = generator.sample(count, steps=spec.sampling_steps, batch_size=g.batch_size,
                                  guidance_scale=spec.guidance_scale, seed=seed, progress=progress, **kw)
        frame = pd.DataFrame({"png": [png_bytes(x) for x in images], **column})
        return frame, SampleStats(requested=count, emitted=count, seconds=time.time() - t0)

    fingerprint = {**generator_fingerprint(config), "images": dataclasses.asdict(spec)}
    synthetic, stats = resumable_sample(config, sample, fingerprint=fingerprint, with_start=True)
    if len(synthetic) == 0:
        raise DPSynthError(f"none of the {g.n} requested images was generated: nothing was exported")
    ledger = generator.ledger
    card = {
        "privacy": privacy_block(ledger, max_examples_per_user=spec.max_images_per_user if spec.user_field else None),
        "declared_public": ledger.declared_public,
        "paid_for": [e.stage for e in ledger.events],
        "model": generator.description,
        "items": "images",
        "spec": {"conditioning": spec.conditioning, "image_size": config.model.image_size,
                 "channels": config.model.channels},
        "generation": {"requested": g.n, "emitted": len(synthetic), "summary": (
            f"{len(synthetic)} images by DDIM in {spec.sampling_steps} steps"
            + (f", classifier-free guidance {spec.guidance_scale} on the public prompts" if prompts else "")
            + (", classes drawn from the class distribution" if spec.conditioning == "class" else ""))},
        "seed": g.seed,
    }
    if generator.conditioning is not None:
        card["conditioning"] = generator.conditioning.to_dict()
    out = export_imagefolder(synthetic, run_dir / "export", card=card, overwrite=config.output.overwrite)
    return {"export": str(out), "epsilon": card["privacy"]["epsilon"], "delta": ledger.delta, "rows": len(synthetic),
            "report": {"images": len(synthetic), "seconds": round(stats.seconds, 1)},
            "sample": synthetic.drop(columns=["png"]).head(5), "synthetic": synthetic, "card": card}


def generate(config: SynthConfig, *, progress: bool = True) -> dict:
    saved = saved_generator_path(config)
    with run_folder(config, fresh=False):
        return generate_and_export(config, load_saved_generator(saved, ImageGenerator), progress=progress)


def run(config: SynthConfig, *, progress: bool = True) -> dict:
    refuse_existing_export(config)
    with run_folder(config):
        generator, _ = _train(config, progress=progress)
        return generate_and_export(config, generator, progress=progress)
