"""`dpsynth demo [records|text]`: the whole road on bundled data, offline.

records (default): DP LoRA fine-tuning of SmolLM2-135M-Instruct at ε=8 on 300 bundled
Water reviews, 200 grammar-constrained synthetic records (``synth/data/demo.toml``).
text: the same on 300 bundled drug reviews conditioned on their rating, 100 synthetic
reviews (``synth/data/demo_text.toml``).
images: a caption-conditional UNet, pretrained on public emoji scenes, DP fine-tuned at ε=10
on 2,000 others standing in for private photos, 64 images from public prompts
(``synth/data/demo_images.toml``; the scenes are drawn from seeds into the output folder).
albums: hierarchical DP albums (summary LM, caption LM given the summary, photo UNet) at ε=8,
user level, on 300 emoji albums (``synth/data/demo_albums.toml``).  Both write the export with its card and print
where it is, the ε spent and a few rows; any config field can be overridden
(``--train.steps 5``, ``--output.dir x``).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

DEMOS = {"records": "demo.toml", "text": "demo_text.toml", "images": "demo_images.toml", "albums": "demo_albums.toml"}
# the album demo's fixture: private albums (seed), public captioned photos for the photo model (seed)
ALBUM_DEMO_SPLITS = {"private": (300, 404), "public": (400, 505)}
# the image demo's fixture: disjoint seeds for the stand-in private split, the public split, the prompts
IMAGE_DEMO_SPLITS = {"private": (2000, 101), "public": (2000, 202), "prompts": (200, 303)}


def write_album_demo_fixture(folder: Path, image_size: int) -> None:
    """The album demo's private albums and public photos (their scenes flattened to an imagefolder)."""
    import json

    from evaluation.fixtures.albums import EmojiAlbums, write_album_folder

    maker = EmojiAlbums(image_size=image_size)
    n, seed = ALBUM_DEMO_SPLITS["private"]
    if not (folder / "private" / "albums.jsonl").is_file():
        write_album_folder(folder / "private", maker.albums(n, seed), overwrite=True)
    n, seed = ALBUM_DEMO_SPLITS["public"]
    if not (folder / "public" / "metadata.jsonl").is_file():
        from trainer.io import atomic_directory

        with atomic_directory(folder / "public") as tmp:
            (tmp / "images").mkdir()
            lines = []
            for i, photo in enumerate(p for a in maker.albums(n, seed) for p in a.photos):
                photo.image.save(tmp / "images" / f"{i:06d}.png")
                lines.append(json.dumps({"file_name": f"images/{i:06d}.png", "text": photo.caption}))
            (tmp / "metadata.jsonl").write_text("\n".join(lines) + "\n")


def write_image_demo_fixture(folder: Path, image_size: int) -> None:
    """The emoji splits the image demo trains on (drawn once; kept for a rerun)."""
    from evaluation.fixtures.emoji import EmojiScenes, write_emoji_imagefolder

    scenes = EmojiScenes(image_size=image_size)
    for name in ("private", "public"):
        n, seed = IMAGE_DEMO_SPLITS[name]
        if not (folder / name / "metadata.jsonl").is_file():
            write_emoji_imagefolder(folder / name, n, seed=seed, scenes=scenes, overwrite=True)
    n, seed = IMAGE_DEMO_SPLITS["prompts"]
    (folder / "prompts.txt").write_text("\n".join(s.caption for s in scenes.scenes(n, seed)) + "\n")


def add_parser(sub) -> None:
    from ..run_config import add_flags

    p = sub.add_parser("demo", help="DP-synthesise bundled data: records (Water reviews, default) or text (drug "
                                    "reviews) with SmolLM2 + LoRA at ε=8, or images (emoji scenes, ε=10)")
    p.add_argument("which", nargs="?", choices=list(DEMOS), default="records",
                   help="records (default), text, images or albums")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    add_flags(p)


def run(args) -> int:
    from ..config_files import read_config
    from ..run_config import build_config, overrides_from
    from .run import pipeline_for, report

    config_path = Path(str(files("synth") / "data" / DEMOS[args.which]))
    raw = read_config(config_path)
    overrides = overrides_from(args)
    overrides.setdefault("output.dir", raw["output"]["dir"])  # the demo writes below the current directory
    if args.overwrite:
        overrides["output.overwrite"] = True
    out = Path(overrides["output.dir"])
    if args.which == "images":  # the fixture lives in the output folder, not beside the bundled config
        write_image_demo_fixture(out / "fixture", int(overrides.get("model.image_size", raw["model"]["image_size"])))
        for section, key in (("data", "path"), ("images", "prompts"), ("images", "public_images")):
            overrides.setdefault(f"{section}.{key}", str(out / raw[section][key]))
    if args.which == "albums":
        size = int(overrides.get("image_model.image_size", raw["image_model"]["image_size"]))
        write_album_demo_fixture(out / "fixture", size)
        for section, key in (("data", "path"), ("albums", "public_images")):
            overrides.setdefault(f"{section}.{key}", str(out / raw[section][key]))
    config = build_config(raw, overrides, base_dir=config_path.parent)
    print(f"dpsynth demo {args.which}: {config.data.path} -> {config.output.dir}/export "
          f"(model {config.model.model} + {config.model.finetune}, target ε={config.train.target_epsilon})")
    report(pipeline_for(config).run(config))
    return 0
