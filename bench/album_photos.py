"""The photo stage of the album study: DP vs non-private photo models with the same compute, scored by
every photo-level album metric (evaluation/albums/evaluate.py).

The caption-conditional UNet of an album run (tiny preset, 32 px) is pretrained without noise on a
public split of emoji album photos, then trained on the "private" albums' photos (the emoji album
fixture, users with one or more albums, at most 4 photos per album) at user level: every photo of a
user is a row of one unit.  Three photo models:

  public_only   the public pretraining alone (no private photo seen, no privacy cost)
  dp            + DP fine-tuning at (eps, delta), user level
  nonprivate    + the same steps without noise or clipping

Each draws the photos of the same albums: the summaries and captions of a separate fixture split
stand in for what the album LMs write (bench/album_hierarchy.py scores that text stage), so the
figures isolate the photo stage.  Scored against held-out real albums with the public album SceneNet:
photo hero consistency / same hero / theme agreement, the photo intra/inter-album distance ratio,
fixture-FID, k-NN P/R, caption-photo consistency, nearest-photo memorisation.

    python bench/album_photos.py                  # ~30 min on 2 CPU cores
    python bench/album_photos.py --steps 5 --pretrain-steps 5 --n 8 --albums 60    # a smoke run
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from evaluation import Encoder
from evaluation.albums.evaluate import album_feature_net, evaluate_albums
from evaluation.fixtures.albums import EmojiAlbums
from evaluation.scene_net import SceneFeatures, to_tensor
from synth.albums import AlbumsSpec, bound_albums
from synth.diffusion import ImageGenerator, UNetChoice
from trainer import TrainConfig

SEEDS = {"private": 404, "heldout": 405, "prompts": 406, "public": 505}  # private / public: the album demo's


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--albums", type=int, default=400, help="private albums")
    ap.add_argument("--public-albums", type=int, default=400)
    ap.add_argument("--pretrain-steps", type=int, default=300)
    ap.add_argument("--steps", type=int, default=200, help="DP / non-private steps on the private photos")
    ap.add_argument("--batch", type=int, default=16, help="expected users per step (4 photos each at most)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--epsilon", type=float, default=3.2,
                    help="the photo stage's ε alone (default: its 40%% share of ε = 8 in the album demo's config)")
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--n", type=int, default=60, help="albums drawn per variant")
    ap.add_argument("--sample-steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--work", default="bench/work/album_photos")
    ap.add_argument("--json", default="bench/results/album_photos_cpu.json")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    maker = EmojiAlbums()
    from synth.albums import AlbumPhoto, AlbumRecord

    drawn = maker.albums(args.albums, seed=SEEDS["private"])
    private = [AlbumRecord(a.album_id, a.user_id, [AlbumPhoto(Path(), to_tensor([p.image])[0], p.caption)
                                                  for p in a.photos], summary=a.summary) for a in drawn]
    private, bounds = bound_albums(private, AlbumsSpec(max_albums_per_user=1, max_photos_per_album=4), seed=0)
    photos = [p.image for a in private for p in a.photos]
    captions = [p.caption for a in private for p in a.photos]
    users = [a.user_id for a in private for _ in a.photos]
    public = [p for a in maker.albums(args.public_albums, seed=SEEDS["public"]) for p in a.photos]

    def as_dicts(albums, with_images=True):
        return [{"summary": a.summary, "captions": [p.caption for p in a.photos][:4],
                 **({"images": [p.image for p in a.photos][:4]} if with_images else {})} for a in albums]

    heldout = as_dicts(maker.albums(args.n, seed=SEEDS["heldout"]))
    prompts = as_dicts(maker.albums(args.n, seed=SEEDS["prompts"]), with_images=False)
    private_dicts = [{"summary": a.summary, "captions": [p.caption for p in a.photos],
                      "images": [p.image for p in a.photos]} for a in private[: 4 * args.n]]
    features = SceneFeatures.trained_on_fixture(album_feature_net())
    encoder = Encoder()
    choice = UNetChoice(model="tiny", image_size=32, captions=True)

    def config(dp: bool, steps: int, batch: int) -> TrainConfig:
        privacy = dict(target_epsilon=args.epsilon, privacy_unit="user", max_examples_per_user=4) if dp else dict(
            non_private=True)
        return TrainConfig(**privacy, delta=args.delta, expected_batch_size=batch, physical_batch_size=64,
                           steps=steps, learning_rate=args.lr, progress=True)

    pre = work / "public_only"
    if not (pre / "dpsynth_config.json").is_file():
        torch.manual_seed(0)
        gen = ImageGenerator(choice)
        gen.pretrain_public(to_tensor([p.image for p in public]), [p.caption for p in public],
                            config(False, args.pretrain_steps, 64), steps=args.pretrain_steps)
        gen.save_pretrained(pre)
    results = {"bounds": bounds.to_dict(), "public_photos": len(public)}
    for name in ("public_only", "dp", "nonprivate"):
        torch.manual_seed(0)
        t = time.time()
        gen = ImageGenerator.from_pretrained(pre) if name == "public_only" else ImageGenerator(
            UNetChoice(**{**choice.__dict__, "model": str(pre / "unet")}))
        meta: dict = {"epsilon": None}
        if name != "public_only":
            dp = name == "dp"
            result = gen.fit(photos, config(dp, args.steps, args.batch if dp else args.batch * 4), labels=captions,
                             units=users if dp else None)
            meta = {"epsilon": result.epsilon if dp else None, "train_seconds": round(time.time() - t, 1)}
        flat = [c for a in prompts for c in a["captions"]]
        t = time.time()
        images = iter(gen.sample(len(flat), steps=args.sample_steps, captions=flat, guidance_scale=args.guidance,
                                 seed=0, progress=True))
        synthetic = [{**a, "images": [next(images) for _ in a["captions"]]} for a in prompts]
        report = evaluate_albums(synthetic, heldout, encoder=encoder, features=features, private=private_dicts)
        report.save(work / f"report_{name}")
        results[name] = {**meta, "sample_seconds": round(time.time() - t, 1),
                         **{m.name: m.value for m in report.metrics}}
        print(name, json.dumps(results[name], indent=1), flush=True)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
