"""Does the hierarchy pay?  Albums whose captions are written given the album's summary vs the same
models writing captions independently of it, DP (user level) and non-private with the same compute,
scored at the text level by the album evaluator (evaluation/albums/evaluate.py: hero consistency and
theme agreement, the summary~caption dependency, intra- vs inter-album caption distance, MAUVE)
against held-out fixture albums.

The emoji album fixture stands in for private albums (users with one or more albums); the LMs are
LoRA on the offline SmolLM2-135M-Instruct (or --lm scratch); photos are left out (images = none):
coherence is decided in the text, before any image is drawn.

    python bench/album_hierarchy.py                       # ~45 min on 2 CPU cores
    python bench/album_hierarchy.py --albums 60 --steps 2 --n 8 --lm scratch   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from evaluation import Encoder
from evaluation.albums.evaluate import evaluate_albums
from evaluation.fixtures.albums import EmojiAlbums, write_album_folder
from synth.albums import AlbumGenerator, AlbumsSpec, load_album_folder
from synth.lm import ModelChoice
from trainer import TrainConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--albums", type=int, default=400)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=16, help="expected users per step")
    ap.add_argument("--physical-batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--epsilon", type=float, default=8.0)
    ap.add_argument("--n", type=int, default=60, help="albums generated per variant")
    ap.add_argument("--lm", default="smollm2")
    ap.add_argument("--work", default="bench/work/album_hierarchy")
    ap.add_argument("--json", default="bench/results/album_hierarchy_cpu.json")
    args = ap.parse_args()
    work = Path(args.work)
    folder = work / "private"
    if not (folder / "albums.jsonl").is_file():
        write_album_folder(folder, EmojiAlbums().albums(args.albums, seed=404), overwrite=True)
    albums = load_album_folder(folder, size=32)
    heldout = [{"summary": a.summary, "captions": [p.caption for p in a.photos]}
               for a in EmojiAlbums().albums(args.n, seed=405)]
    encoder = Encoder()

    def scores(out: list[dict]) -> dict:
        report = evaluate_albums(out, heldout, encoder=encoder)
        return {m.name: m.value for m in report.metrics}

    real = [{"summary": a.summary, "captions": [p.caption for p in a.photos][:4]} for a in albums[:args.n]]
    results = {"real albums (the private split, first n, 4 photos)": {k: v for k, v in scores(real).items()
                                                                      if not k.endswith("_real")}}
    out_path = Path(args.json)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    lm = ModelChoice(model=args.lm, finetune="lora" if args.lm == "smollm2" else "full")
    for private in (True, False):
        for hierarchical in (True, False):
            name = f"{'dp' if private else 'nonprivate'}_{'hierarchical' if hierarchical else 'independent'}"
            torch.manual_seed(0)
            spec = AlbumsSpec(max_albums_per_user=1, max_photos_per_album=4, images="none", hierarchical=hierarchical,
                              description="A photo album of emoji scenes.")
            gen = AlbumGenerator(spec, lm)
            dp = dict(target_epsilon=args.epsilon) if private else dict(non_private=True)
            cfg = TrainConfig(**dp, delta=1e-5, expected_batch_size=args.batch, physical_batch_size=args.physical_batch,
                              steps=args.steps, learning_rate=args.lr, progress=True)
            t = time.time()
            ledger = gen.fit(albums, cfg)
            train_s = time.time() - t
            t = time.time()
            out = gen.sample(args.n, seed=0, max_new_tokens=32, temperature=0.8, progress=True)
            (work / f"albums_{name}.jsonl").write_text("".join(json.dumps(a) + "\n" for a in out))  # to rescore later
            results[name] = {"epsilon": ledger.epsilon() if private else None, "train_seconds": round(train_s, 1),
                             "sample_seconds": round(time.time() - t, 1),
                             **scores(out),
                             "examples": [{"summary": a["summary"], "captions": a["captions"][:3]} for a in out[:3]]}
            print(name, json.dumps(results[name], indent=1), flush=True)
            out_path.write_text(json.dumps({"args": vars(args), "results": results}, indent=2))  # after each variant
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
