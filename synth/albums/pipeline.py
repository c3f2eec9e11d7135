"""train -> generate -> export for an album folder: the library functions behind `dpsynth run` with an
``[albums]`` config.  The run folder, lock and resumable checkpoints are the other roads'."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from trainer import PrivacyLedger
from trainer.errors import ConfigError
from trainer.io import atomic_directory, atomic_write_text
from trainer.seeds import seeded_torch

from ..card import privacy_block, render_card
from ..export import software_version
from ..image_files import load_image_folder, png_bytes
from ..run_config import SynthConfig
from ..run_folder import load_saved_generator, refuse_existing_export, run_folder, saved_generator_path
from .describe import check_models
from .folder import load_album_folder
from .generator import AlbumGenerator


def _public_facts(config: SynthConfig, n_public: int | None) -> list[str]:
    spec = config.albums
    facts = [f"album description: {spec.description!r}", f"album length range: 1..{spec.max_photos_per_album}"]
    if spec.public_images:
        facts.append(f"public pretraining images: {spec.public_images} ({n_public} images, {spec.pretrain_steps} "
                     "steps without noise)")
    if spec.captioner:
        facts.append(f"captioner (public image-to-text model, by path; its captions of private photos are trained on "
                     f"with DP, not exported): {spec.captioner}")
    if spec.summariser:
        facts.append(f"summariser (public LM; its summaries of private captions are trained on with DP, not exported): "
                     f"{spec.summariser}")
    if spec.image_pipeline:
        facts.append(f"photos drawn by a public text-to-image pipeline (by path, nothing trained): {spec.image_pipeline}")
    elif spec.images != "none":
        facts.append("caption encoder (frozen): " + (config.image_model.caption_encoder or "all-MiniLM-L6-v2"))
    return facts


def _pretrain_images(config: SynthConfig, gen: AlbumGenerator, progress: bool) -> int:
    spec = config.albums
    folder = load_image_folder(spec.public_images, size=config.image_model.image_size,
                               channels=config.image_model.channels)
    gen.images.pretrain_public(folder.images, folder.field("text", Path(spec.public_images)), config.train,
                               steps=spec.pretrain_steps, progress=progress,
                               output_dir=Path(config.output.dir) / "pretrain_checkpoints")
    return len(folder.images)


def train(config: SynthConfig, *, progress: bool = True) -> tuple[AlbumGenerator, None]:
    """(generator, None): the other roads' shape, (generator, private data) -- albums keep none."""
    with run_folder(config):
        return _train(config, progress=progress), None


def _train(config: SynthConfig, *, progress: bool) -> AlbumGenerator:
    spec, run_dir = config.albums, Path(config.output.dir)
    config.model.check_source()
    check_models(spec.captioner, spec.summariser, spec.image_pipeline)
    albums = load_album_folder(config.data.path, size=config.image_model.image_size,
                               channels=config.image_model.channels)
    with seeded_torch(config.train.seed, "model_init"):  # the same initial models for a seeded run
        gen = AlbumGenerator(spec, config.model, dataclasses.replace(config.image_model, captions=True))
    n_public = _pretrain_images(config, gen, progress) if spec.public_images else None
    users = {a.user_id for a in albums}
    ledger = PrivacyLedger(delta=config.train.resolve_delta(len(users)), accountant=config.train.accountant,
                           privacy_unit="user", declared_public=_public_facts(config, n_public), n_units=len(users))
    train_config = dataclasses.replace(config.train, progress=progress and config.train.progress, delta=ledger.delta)
    gen.fit(albums, train_config, output_dir=run_dir / "checkpoints", ledger=ledger,
            image_steps=spec.image_steps)
    report = {"note": "NOT differentially private: statistics of the private albums, do not publish",
              "bounds": gen.bounds.to_dict(), "described": gen.described.to_dict()}
    atomic_write_text(run_dir / "data_report.json", json.dumps(report, indent=2, sort_keys=True))
    gen.save_pretrained(run_dir / "generator")
    return gen


def export_albums(albums: list[dict], out_dir: Path, *, card: dict, overwrite: bool) -> Path:
    """One folder per album (``album.json`` + PNGs), a top-level ``metadata.jsonl`` (imagefolder: one
    photo a line with album_id, summary and its caption as text), ``albums.jsonl`` (one album a line,
    the input's own format, so an export reads back with ``load_album_folder``), the card; atomically."""
    if out_dir.exists() and not overwrite:
        raise ConfigError(f"output folder {out_dir} exists; pass --overwrite to replace it")
    card = {**card, "rows": len(albums), "data_file": "albums.jsonl, metadata.jsonl + <album>/", "software_version": software_version()}
    with atomic_directory(out_dir) as tmp:
        lines, album_lines = [], []
        for a in albums:
            (tmp / a["album_id"]).mkdir()
            photos = []
            for i, caption in enumerate(a["captions"]):
                entry = {"caption": caption}
                if "images" in a:
                    name = f"{a['album_id']}/{i}.png"
                    (tmp / name).write_bytes(png_bytes(a["images"][i]))
                    entry["file"] = name
                    lines.append(json.dumps({"file_name": name, "album_id": a["album_id"], "summary": a["summary"],
                                             "text": caption}, ensure_ascii=False))
                photos.append(entry)
            record = {"album_id": a["album_id"], "summary": a["summary"], "photos": photos}
            album_lines.append(json.dumps(record, ensure_ascii=False))
            local = {**record, "photos": [{**p, "file": Path(p["file"]).name} if "file" in p else p for p in photos]}
            (tmp / a["album_id"] / "album.json").write_text(json.dumps(local, indent=2, ensure_ascii=False))
        (tmp / "albums.jsonl").write_text("\n".join(album_lines) + "\n", encoding="utf-8")
        if lines:
            (tmp / "metadata.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (tmp / "dpsynth.json").write_text(json.dumps(card, indent=2, sort_keys=True, default=str))
        (tmp / "README.md").write_text(render_card(card))
    return out_dir


def generate_and_export(config: SynthConfig, gen: AlbumGenerator, *, progress: bool = True) -> dict:
    g, spec, run_dir = config.generate, config.albums, Path(config.output.dir)
    albums = gen.sample(g.n, seed=g.seed, max_new_tokens=spec.max_new_tokens, temperature=g.temperature,
                        batch_size=g.batch_size, image_steps=spec.sampling_steps, guidance_scale=spec.guidance_scale,
                        progress=progress, lm_dtype=g.dtype)
    ledger = gen.ledger
    photos = sum(len(a["captions"]) for a in albums)
    shares = spec.shares
    card = {
        "privacy": privacy_block(ledger, max_examples_per_user=spec.max_albums_per_user * spec.max_photos_per_album),
        "declared_public": ledger.declared_public,
        "paid_for": [e.stage for e in ledger.events],
        "epsilon_shares": shares,
        "model": f"summary and caption LMs: {gen.summary_lm.model_description}; photos: "
                 + (gen.images.description if gen.images is not None else "none (text-only albums)"),
        "items": "albums",
        "spec": dataclasses.asdict(spec),
        "generation": {"requested": g.n, "emitted": len(albums), "summary": (
            f"{len(albums)} albums, {photos} photos: a summary each, a length from the DP histogram, captions "
            "given the summary" + (f", photos by DDIM in {spec.sampling_steps} steps with guidance "
                                   f"{spec.guidance_scale}" if gen.images is not None else ""))},
        "seed": g.seed,
    }
    out = export_albums(albums, run_dir / "export", card=card, overwrite=config.output.overwrite)
    return {"export": str(out), "epsilon": card["privacy"]["epsilon"], "delta": ledger.delta, "rows": len(albums),
            "report": {"albums": len(albums), "photos": photos}, "albums": albums, "card": card}


def generate(config: SynthConfig, *, progress: bool = True) -> dict:
    saved = saved_generator_path(config)
    with run_folder(config, fresh=False):
        return generate_and_export(config, load_saved_generator(saved, AlbumGenerator), progress=progress)


def run(config: SynthConfig, *, progress: bool = True) -> dict:
    refuse_existing_export(config)
    with run_folder(config):
        gen = _train(config, progress=progress)
        return generate_and_export(config, gen, progress=progress)
