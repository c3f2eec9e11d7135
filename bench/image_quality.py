"""The image quality study of issue 12, on the public emoji fixture standing in for private images.

A "private" split (say 5,000 captioned scenes, 32 px, one image per unit), a disjoint public split
for pretraining, a held-out split for scoring, and generation prompts drawn from the public
caption stream.  Four generators, the same caption-conditional UNet preset and the same training
steps and batch (the same compute):

  (a) dp_scratch        DP-trained from random weights at (ε, δ)
  (b) public_then_dp    non-private pretraining on the public split, then DP fine-tuning
  (c) nonprivate        the private split without noise or clipping
  (d) public_only       the public-pretrained model alone (no private image seen)

Each is scored by evaluation.images (fixture-FID, k-NN precision / recall, caption consistency,
downstream object F1, nearest-image memorisation).  Results go to bench/results/ as JSON and one
HTML report per generator; a finished generator is kept in --work and not retrained.

    python bench/image_quality.py                                  # the full study (~1 h on 2 CPU cores)
    python bench/image_quality.py --n-private 500 --steps 20 --n-generate 64   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from evaluation.fixtures.emoji import EmojiScenes
from evaluation.images.evaluate import evaluate_images
from evaluation.scene_net import SceneFeatures, to_tensor
from synth.images import ImageGenerator, UNetChoice
from trainer import TrainConfig

SEEDS = {"private": 1, "public": 2, "heldout": 3, "prompts": 4}
VARIANTS = ("dp_scratch", "public_then_dp", "nonprivate", "public_only")


def split(name: str, n: int, size: int):
    scenes = EmojiScenes(image_size=size).scenes(n, SEEDS[name])
    return list(to_tensor([s.image for s in scenes])), [s.caption for s in scenes]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-private", type=int, default=5000)
    ap.add_argument("--n-public", type=int, default=5000)
    ap.add_argument("--n-heldout", type=int, default=1000)
    ap.add_argument("--n-generate", type=int, default=500)
    ap.add_argument("--steps", type=int, default=400, help="training steps of every generator (and of pretraining)")
    ap.add_argument("--batch", type=int, default=64, help="expected batch (Poisson) / batch")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--epsilon", type=float, default=10.0)
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--sample-steps", type=int, default=25)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--work", default="bench/work/image_quality")
    ap.add_argument("--json", default="bench/results/image_quality_cpu.json")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    private, private_caps = split("private", args.n_private, args.image_size)
    heldout, heldout_caps = split("heldout", args.n_heldout, args.image_size)
    prompts = split("prompts", args.n_generate, args.image_size)[1]
    features = SceneFeatures.trained_on_fixture()
    choice = dict(model=args.preset, image_size=args.image_size, captions=True)

    def config(private_training: bool, steps: int) -> TrainConfig:
        dp = dict(target_epsilon=args.epsilon) if private_training else dict(non_private=True)
        return TrainConfig(**dp, delta=args.delta, expected_batch_size=args.batch, physical_batch_size=args.batch,
                           steps=steps, learning_rate=args.lr, progress=True)

    def trained(name: str, build) -> tuple[ImageGenerator, dict]:
        folder = work / name
        if (folder / "dpsynth_config.json").is_file():
            meta = json.loads((folder / "study.json").read_text())
            return ImageGenerator.from_pretrained(folder), meta
        torch.manual_seed(0)
        t = time.time()
        gen, meta = build()
        meta["train_seconds"] = round(time.time() - t, 1)
        gen.save_pretrained(folder)
        (folder / "study.json").write_text(json.dumps(meta))
        return gen, meta

    def pretrain():
        public, public_caps = split("public", args.n_public, args.image_size)
        gen = ImageGenerator(UNetChoice(**choice))
        gen.fit(public, config(False, args.steps), labels=public_caps)
        return gen, {"private_images_seen": 0, "epsilon": 0.0}

    def dp(gen: ImageGenerator):
        result = gen.fit(private, config(True, args.steps), labels=private_caps)
        return gen, {"epsilon": result.epsilon, "noise_multiplier": gen.ledger.events[-1].noise_multiplier}

    def nonprivate():
        gen = ImageGenerator(UNetChoice(**choice))
        gen.fit(private, config(False, args.steps), labels=private_caps)
        return gen, {"epsilon": None}

    builds = {
        "public_only": pretrain,
        "dp_scratch": lambda: dp(ImageGenerator(UNetChoice(**choice))),
        "public_then_dp": lambda: dp(ImageGenerator(UNetChoice(**{**choice, "model": str(work / "public_only" / "unet")}))),
        "nonprivate": nonprivate,
    }
    results = {}
    wanted = args.variants.split(",")
    order = ["public_only"] + [v for v in VARIANTS if v != "public_only"]  # (b) starts from (d)'s weights
    for name in order:
        if name not in wanted and not (name == "public_only" and "public_then_dp" in wanted):
            continue
        gen, meta = trained(name, builds[name])
        t = time.time()
        images = gen.sample(len(prompts), steps=args.sample_steps, captions=prompts, guidance_scale=args.guidance,
                            seed=0, progress=True)
        report = evaluate_images(images, prompts, heldout, heldout_caps, features=features, private=private,
                                 private_captions=private_caps, seed=0)
        report.info["generator"] = {"variant": name, **meta, "description": gen.description}
        report.save(work / f"report_{name}")
        results[name] = {**meta, "sample_seconds": round(time.time() - t, 1),
                         **{m.name: m.value for m in report.metrics}}
        print(name, json.dumps(results[name], indent=1), flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
