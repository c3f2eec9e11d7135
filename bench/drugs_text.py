"""The text road's study on the drug reviews (issue 11, done-when 3): DP fine-tuning at ε = 8 beside
non-private fine-tuning with the same compute, every text metric against held-out reviews.

    python bench/drugs_text.py                       # both roads, seed 0 (about 50 minutes on 2 cores)
    python bench/drugs_text.py --steps 36 --n 600    # more compute (about 45 s a step)
    python bench/drugs_text.py --roads dp --seeds 1  # one more DP run, added to the results file
    python bench/drugs_text.py --labels rating condition   # condition too (DP category list, "(other)")
    python bench/drugs_text.py --roads evolve fine-tune+evolve --iterations 5   # Private Evolution (issue 16)
    python bench/drugs_text.py --roads fine-tune+evolve --keep-parents    # a pool of twice the population
    python bench/drugs_text.py --lora-targets q_proj v_proj --lora-rank 4   # fewer DP-trained coordinates
    python bench/drugs_text.py --samplings 0.5 0.8:2   # also sample the trained model at temperature[:guidance]
    python bench/drugs_text.py --roads dp --n 2000 --reuse   # 2,000 reviews from the DP run's saved generator
    python bench/drugs_text.py --table               # the README's table from the results file

``../shared/data/drugs_train.csv`` (600 reviews) is the private corpus, ``drugs_test.csv`` (379) the
held-out one.  Both roads: the text demo's model and chunking (SmolLM2-135M-Instruct, LoRA rank 8,
192-token chunks, a review is the privacy unit, at most 2 chunks of it per step), conditioned on
the rating class (negative / neutral / positive: declared public categories; the class shares a DP
histogram in the same ledger), ``--steps`` steps of ``--batch`` expected reviews, cosine schedule;
then ``--n`` synthetic reviews.  Scored with ``evaluation.evaluate_text``
(MAUVE, k-NN P/R, FID, length W1, label TV, TSTR / TRTR / majority floor on rating, memorisation).
The done-when test: DP TSTR on rating recovers at least half of the non-private road's gain over
the majority floor.  ``--labels rating condition`` adds the treated condition as a second label, its
category list estimated with DP in the same ledger; the long tail below the list's release threshold
is trained on as ``(other)``, and for scoring the private and held-out reviews' conditions outside the
released (public) list are mapped to ``(other)`` the same way.
``--roads evolve`` (issue 16's text row): Private Evolution at ε = 8 with the public SmolLM2 as the
random and variation model, no DP training; ``fine-tune+evolve``: DP fine-tuning to half the ε, then
evolution with the fine-tuned model (``evolve.budget_share``).  ``--iterations`` histograms; a review
votes among the candidates of its own labels.
``--samplings``: after each run, the same trained generator samples ``--n`` more reviews at each
``temperature[:guidance_scale]`` (post-processing: no privacy cost; a row each, apart in the tables;
rows without them used the demo's temperature 0.8 and no guidance).
Results: ``bench/results/drugs_text_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
WORK = ROOT / "bench" / "work" / "drugs_text"
OUT = ROOT / "bench" / "results" / "drugs_text_cpu.json"


ROADS = ("dp", "non-private", "evolve", "fine-tune+evolve")
DEMO_TEMPERATURE = 0.8  # synth/data/demo_text.toml's generate.temperature


def config(road: str, seed: int, steps: int, batch: int, lr: float, n: int, labels: tuple[str, ...] = ("rating",),
           iterations: int = 5, lora_targets: list[str] | None = None, lora_rank: int | None = None,
           variations: int = 1, keep_parents: bool = False, bf16: bool = False) -> dict:
    from synth.config_files import read_config

    raw = read_config(ROOT / "synth" / "data" / "demo_text.toml")
    raw["data"] = {"path": str(DATA / "drugs_train.csv")}
    if "condition" in labels:
        raw["text"]["labels"] = [*raw["text"]["labels"], {"name": "condition", "type": "categorical", "estimate": True,
                                                          "nullable": True}]  # 3 reviews name none
    raw["train"].update({"steps": steps, "expected_batch_size": batch, "learning_rate": lr, "lr_schedule": "cosine",
                         "warmup_steps": max(1, steps // 10), "seed": seed, "insecure_seed": True,
                         "progress": False})
    if road == "non-private":
        raw["train"].pop("target_epsilon", None)
        raw["train"]["non_private"] = True
    if road in ("evolve", "fine-tune+evolve"):
        raw["evolve"] = {"road": road, "iterations": iterations, "variations": variations, "keep_parents": keep_parents}
    raw["generate"].update({"n": n, "seed": seed})
    if bf16:  # bf16 DP forwards and bf16 decoding (native on this CPU: README "bf16")
        raw["train"]["dtype"] = raw["generate"]["dtype"] = "bf16"
    if lora_targets:
        raw["model"]["lora_targets"] = list(lora_targets)
    if lora_rank:
        raw["model"]["lora_rank"] = lora_rank
    suffix = "" if tuple(labels) == ("rating",) else "_" + "_".join(labels)
    suffix += "".join(f"_{t}" for t in lora_targets or []) + (f"_r{lora_rank}" if lora_rank else "")
    if road in ("evolve", "fine-tune+evolve"):
        suffix += (f"_v{variations}" if variations != 1 else "") + ("_keep" if keep_parents else "")
    suffix += "_bf16" if bf16 else ""
    suffix += f"_T{steps}_B{batch}_lr{lr:g}"  # every training setting names its folder: --reuse must find its own
    raw["output"] = {"dir": str(WORK / f"{road}_seed{seed}{suffix}"), "overwrite": True, "format": "jsonl"}
    return raw


def score(synthetic: pd.DataFrame, labels: tuple[str, ...] = ("rating",), run_dir: Path | None = None) -> dict:
    from evaluation import Encoder, evaluate_text
    from synth.domains import OTHER_CATEGORY

    private, heldout = pd.read_csv(DATA / "drugs_train.csv"), pd.read_csv(DATA / "drugs_test.csv")
    if "condition" in labels:  # the real reviews' conditions on the released list's terms
        released = {e["column"]: e["value"] for e in json.loads((run_dir / "domains.json").read_text())}["condition"]
        for frame in (private, heldout):
            named = frame["condition"].isin(released) | frame["condition"].isna()
            frame["condition"] = frame["condition"].where(named, OTHER_CATEGORY)
    report = evaluate_text(private, heldout, synthetic, text="review", labels=list(labels), encoder=Encoder())
    return {m.name: m.value for m in report.metrics}


COLUMNS = {"mauve": "MAUVE", "knn_precision": "k-NN precision", "knn_recall": "k-NN recall",
           "fid": "FID (lower is better)", "am/w1/length_words": "length W1, words (lower is better)",
           "am/tv/rating": "rating TV (lower is better)", "utility/rating/tstr_accuracy": "TSTR accuracy (rating)",
           "utility/rating/trtr_accuracy": "TRTR accuracy (rating)",
           "utility/rating/majority_class_accuracy": "majority floor (rating)",
           "utility/rating/tstr_macro_f1": "TSTR macro-F1 (rating)", "utility/rating/trtr_macro_f1": "TRTR macro-F1 (rating)",
           "utility/rating/label_fidelity": "label fidelity (rating; held-out real = TRTR accuracy)",
           "am/tv/condition": "condition TV (lower is better)",
           "utility/condition/tstr_accuracy": "TSTR accuracy (condition)",
           "utility/condition/trtr_accuracy": "TRTR accuracy (condition)",
           "utility/condition/majority_class_accuracy": "majority floor (condition)",
           "utility/condition/tstr_macro_f1": "TSTR macro-F1 (condition)",
           "utility/condition/label_fidelity": "label fidelity (condition)",
           "memorisation/exact_copy_share": "share of exact copies of a private review",
           "memorisation/longest_common_substring_chars": "longest substring shared with a private review, chars",
           "memorisation/heldout_longest_common_substring_chars": "the same for held-out real reviews",
           "memorisation/8gram_overlap": "8-gram overlap with private reviews",
           "memorisation/heldout_8gram_overlap": "the same for held-out real reviews",
           "epsilon": "ε", "seconds": "seconds"}


def setting(row: dict) -> tuple:
    """What makes rows comparable: a table and its gain share mix only rows of one setting."""
    return (row["steps"], row["batch"], row.get("n", 400), tuple(row.get("labels", ["rating"])),
            tuple(row.get("lora_targets") or ()), row.get("lora_rank"), row.get("temperature", DEMO_TEMPERATURE),
            row.get("guidance_scale", 1.0), row.get("variations", 1), row.get("keep_parents", False),
            row.get("dtype", "fp32"))


def tables(rows: list[dict]) -> str:
    """One table and gain share per setting (steps, batch, n, labels), in the order first run."""
    out = []
    for key in dict.fromkeys(setting(r) for r in rows):
        chosen = [r for r in rows if setting(r) == key]
        steps, batch, n, labels, targets, rank, temperature, guidance, variations, keep_parents, dtype = key
        lora = f", LoRA r={rank or 8} on {', '.join(targets)}" if targets or rank else ""
        lora += f", sampled at temperature {temperature:g}" if temperature != DEMO_TEMPERATURE else ""
        lora += f", guidance {guidance:g}" if guidance != 1.0 else ""
        lora += f", {variations} variations a parent" if variations != 1 else ""
        lora += ", parents kept in the pool" if keep_parents else ""
        lora += ", bf16 training and decoding" if dtype == "bf16" else ""
        out += [f"{steps} steps of {batch}, {n} synthetic reviews, labels {', '.join(labels)}{lora}:", "",
                markdown(chosen), gain_share(chosen), ""]
    return "\n".join(out)


def markdown(rows: list[dict]) -> str:
    """The metric table of rows of ONE setting (see ``tables``)."""
    frame = pd.DataFrame(rows)
    roads = [r for r in ROADS if r in set(frame["road"])]
    lines = ["| metric (vs 379 held-out reviews) | " + " | ".join(
        f"{r} ({(frame['road'] == r).sum()} seed{'s' if (frame['road'] == r).sum() > 1 else ''})" for r in roads) + " |",
        "|---|" + "---:|" * len(roads)]
    for key, name in COLUMNS.items():
        cells = []
        for r in roads:
            values = frame.loc[frame["road"] == r, key] if key in frame else pd.Series(dtype=float)
            values = values.dropna().astype(float)
            cells.append("–" if values.empty else f"{values.mean():.3f}" + (f" ± {values.std():.3f}" if len(values) > 1
                                                                            else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gain_share(rows: list[dict]) -> str:
    """The done-when figure: (DP TSTR − floor) / (non-private TSTR − floor), means over seeds."""
    frame = pd.DataFrame(rows)
    tstr = frame.groupby("road")["utility/rating/tstr_accuracy"].mean()
    floor = frame["utility/rating/majority_class_accuracy"].mean()
    if not {"dp", "non-private"} <= set(tstr.index):
        return "needs both roads"
    gain = tstr["non-private"] - floor
    return (f"floor {floor:.3f}; TSTR: DP {tstr['dp']:.3f}, non-private {tstr['non-private']:.3f}; DP recovers "
            + (f"{(tstr['dp'] - floor) / gain:.2f} of the non-private gain" if gain > 0 else
               "n/a (the non-private road is not above the floor)"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--roads", nargs="+", default=["dp", "non-private"], choices=list(ROADS))
    ap.add_argument("--iterations", type=int, default=5, help="Private Evolution's histograms (evolve roads)")
    ap.add_argument("--variations", type=int, default=1, help="evolve.variations (evolve roads)")
    ap.add_argument("--keep-parents", action="store_true", help="evolve.keep_parents (evolve roads)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--steps", type=int, default=20, help="DP steps (about 45 s each on 2 cores)")
    ap.add_argument("--batch", type=int, default=32, help="expected reviews per step")
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--n", type=int, default=400, help="synthetic reviews per run")
    ap.add_argument("--labels", nargs="+", default=["rating"], choices=["rating", "condition"])
    ap.add_argument("--lora-targets", nargs="+", default=None,
                    help="model.lora_targets, e.g. q_proj v_proj (default: every attention and MLP projection)")
    ap.add_argument("--lora-rank", type=int, default=None, help="model.lora_rank (default: the demo's 8)")
    ap.add_argument("--samplings", nargs="+", default=[], metavar="T[:G]",
                    help="also sample each trained generator at temperature T (and generate.guidance_scale G): a row "
                    "each, no retraining")
    ap.add_argument("--bf16", action="store_true", help="train.dtype and generate.dtype = bf16")
    ap.add_argument("--reuse", action="store_true",
                    help="train nothing: sample --n reviews from the generator this setting's run saved (post-processing, "
                         "no privacy cost; the full parts of its earlier sampling are kept)")
    ap.add_argument("--table", action="store_true", help="print the README's table from the results file and stop")
    ap.add_argument("--out", type=Path, default=OUT, help="the results file (rows are added to it)")
    args = ap.parse_args()
    if args.table:
        print(tables(json.loads(args.out.read_text())["rows"]))
        return
    from synth.run_config import build_config
    from synth.text.pipeline import generate, run

    rows = json.loads(args.out.read_text())["rows"] if args.out.exists() else []
    for seed, road in ((s, r) for s in args.seeds for r in args.roads):
        start = time.time()
        labels = tuple(args.labels)
        cfg = build_config(config(road, seed, args.steps, args.batch, args.lr, args.n, labels, args.iterations,
                                  args.lora_targets, args.lora_rank, args.variations, args.keep_parents, args.bf16))
        result = generate(cfg, progress=False) if args.reuse else run(cfg, progress=False)
        seconds = round(time.time() - start, 1)
        synthetic = result["synthetic"]
        row = {"road": road, "seed": seed, "steps": args.steps, "batch": args.batch, "lr": args.lr, "n": args.n,
               "labels": list(labels), "epsilon": result.get("epsilon"), "seconds": seconds,
               **({"lora_targets": args.lora_targets} if args.lora_targets else {}),
               **({"lora_rank": args.lora_rank} if args.lora_rank else {}),
               **({"dtype": "bf16"} if args.bf16 else {}),
               **({"iterations": args.iterations, "variations": args.variations, "keep_parents": args.keep_parents}
                  if "evolve" in road else {}),
               "command": " ".join(sys.argv),  # the file's "command" is only the latest run's
               "documents": len(synthetic), **score(synthetic, labels, Path(cfg.output.dir))}
        if args.reuse:  # this run only sampled: the wall time of training is its training row's
            row["sampling_seconds"], row["seconds"] = seconds, _training_seconds(rows, row)
        rows = _keep(rows, row, args.out)
        for sampling in args.samplings:  # the same trained generator, sampled again
            temperature, _, guidance = sampling.partition(":")
            raw = config(road, seed, args.steps, args.batch, args.lr, args.n, labels, args.iterations,
                         args.lora_targets, args.lora_rank, args.variations, args.keep_parents, args.bf16)
            raw["generate"].update({"temperature": float(temperature), "guidance_scale": float(guidance or 1.0)})
            start = time.time()
            again = generate(build_config(raw), progress=False)["synthetic"]
            rows = _keep(rows, {**row, "temperature": float(temperature), "guidance_scale": float(guidance or 1.0),
                                "sampling_seconds": round(time.time() - start, 1), "documents": len(again),
                                **score(again, labels, Path(cfg.output.dir))}, args.out)
    print(tables(rows))


def _training_seconds(rows: list[dict], row: dict) -> float | None:
    """The wall time of the run that trained ``row``'s generator: its road, seed and setting at any n."""
    return next((r["seconds"] for r in rows if "sampling_seconds" not in r and (r["road"], r["seed"]) ==
                 (row["road"], row["seed"]) and setting({**r, "n": row["n"]}) == setting(row)), None)


def _keep(rows: list[dict], row: dict, out: Path) -> list[dict]:
    """Add ``row`` to the results file (replacing the same road, seed and setting)."""
    print(json.dumps(row), flush=True)
    rows = [r for r in rows if (r["road"], r["seed"]) != (row["road"], row["seed"]) or setting(r) != setting(row)]
    rows.append(row)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
