"""Water at ε = 4: the records road's fine-tune vs evolve vs fine-tune+evolve (issue 16), scored on
held-out rows beside real vs real.

    python bench/water_evolve.py                               # every road, 500 records, 5 iterations
    python bench/water_evolve.py --roads evolve --n 200 --iterations 3
    python bench/water_evolve.py --roads evolve --record-variation rewrite   # the whole-record rewrite

``../shared/data/water_dev.csv``: rows 0-1499 are private, rows 1500-1999 held out.  Every road uses the
demo's model (SmolLM2-135M-Instruct; LoRA, 12 DP steps of 24 rows where it fine-tunes, or
``--steps`` of ``--batch``) and writes
``--n`` records; evolve's population is ``--n``.  Scored with ``evaluation.evaluate`` against the
held-out rows: CFG-PR, KND title ~ cleaned_review, attribute match (rating TV, review length W1),
k-NN precision / recall, TSTR on rating (with the majority floor and TRTR), exact-copy share (vs the
held-out rows, and vs the private rows), distinct records, wall time, the process's peak RSS so far.  ``--record-variation`` is
``evolve.record_variation`` (``fields``: a random subset of fields written anew, the rest pinned;
``rewrite``: the whole record rewritten from an instruction prompt; rows written before session 19
have no ``record_variation`` key and used ``rewrite``).  ``--field-weight`` is ``evolve.field_weight``
(the non-text fields beside the text embedding in the votes); ``--variations`` / ``--keep-parents`` are
``evolve.variations`` / ``evolve.keep_parents`` (a pool of candidates larger than ``--n``);
``--budget-share`` is ``evolve.budget_share``; ``--no-description`` leaves the spec's description out
of the prompt (fewer tokens in every DP forward: more steps in the same CPU time); ``--bf16`` trains
with ``train.dtype = "bf16"``, ``--generate-bf16`` decodes with ``generate.dtype = "bf16"``.  An evolving road's row also scores ``first_draw``:
``--n`` of the generator's own candidates before any histogram (the DP fine-tuned model alone, on
fine-tune+evolve).  Results: ``bench/results/water_evolve_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WATER = ROOT.parent / "shared" / "data" / "water_dev.csv"
WORK = ROOT / "bench" / "work" / "water_evolve"
OUT = ROOT / "bench" / "results" / "water_evolve_cpu.json"
ROADS = ("fine-tune", "evolve", "fine-tune+evolve")
DEMO_STEPS, DEMO_BATCH = 12, 24  # synth/data/demo.toml's DP fine-tuning: the rows before --steps / --batch


def config(road: str, n: int, iterations: int, seed: int, variation: str = "fields",
           fields_changed: float = 0.5, field_weight: float = 0.0, resume: bool = False, variations: int = 1,
           keep_parents: bool = False, steps: int | None = None, batch: int | None = None,
           budget_share: float | None = None, no_description: bool = False, bf16: bool = False,
           generate_bf16: bool = False, field_temperature: dict[str, float] | None = None) -> dict:
    from synth.config_files import read_config

    raw = read_config(ROOT / "synth" / "data" / "demo.toml")
    raw["data"] = {"path": str(WORK / "train.csv"), "invalid_rows": "clip"}
    raw["train"].update({"target_epsilon": 4.0, "seed": seed, "insecure_seed": True, "progress": False})
    raw["generate"].update({"seed": seed, "n": n})
    if no_description:  # the prompt without the spec's description: 47 of a row's ~120 tokens instead of 89 of ~162
        raw["spec"].pop("description", None)
    if steps:
        raw["train"]["steps"] = steps
    if bf16:  # bf16 autocast in the DP forwards (1.35x on this CPU's avx512_bf16: bench/engine_speed.py)
        raw["train"]["dtype"] = "bf16"
    if generate_bf16:  # decoding on a bf16 copy (1.14-1.37x records/s: bench/generation_speed.py --bf16)
        raw["generate"]["dtype"] = "bf16"
    if batch:
        raw["train"]["expected_batch_size"] = batch
    if field_temperature:
        raw["generate"]["field_temperature"] = field_temperature
    suffix = "" if road == "fine-tune" else f"_{variation}{fields_changed:g}" if variation == "fields" else f"_{variation}"
    suffix += f"_w{field_weight:g}" if field_weight and road != "fine-tune" else ""
    if road != "fine-tune":
        suffix += (f"_v{variations}" if variations != 1 else "") + ("_keep" if keep_parents else "")
        suffix += f"_share{budget_share:g}" if budget_share and road == "fine-tune+evolve" else ""
    suffix += (f"_T{steps}" if steps else "") + (f"_B{batch}" if batch else "") + ("_nodesc" if no_description else "")
    suffix += ("_bf16" if bf16 else "") + ("_genbf16" if generate_bf16 else "")
    suffix += "".join(f"_ft-{name}{t:g}" for name, t in sorted((field_temperature or {}).items()))
    raw["output"] = {"dir": str(WORK / f"{road.replace('+', '_')}_n{n}_seed{seed}{suffix}"), "overwrite": not resume}
    raw.pop("evaluation", None)
    if road != "fine-tune":
        raw["evolve"] = {"road": road, "iterations": iterations, "record_variation": variation,
                         "fields_changed": fields_changed, "field_weight": field_weight,
                         "variations": variations, "keep_parents": keep_parents}
        if budget_share:
            raw["evolve"]["budget_share"] = budget_share
    return raw


def score(train: pd.DataFrame, held_out: pd.DataFrame, synthetic: pd.DataFrame) -> dict:
    from evaluation import Encoder, EvalSpec, RecordGrammar, evaluate
    from synth.records.grammar import derive_grammar
    from synth.records.serialize import frame_to_texts
    from synth.spec import DatasetSpec

    spec = DatasetSpec.from_dict(config("fine-tune", 1, 1, 0)["spec"])
    eval_spec = EvalSpec.from_dict({"columns": spec.names, "serialization": spec.serialization,
                                    "key_nodes": [["title", "cleaned_review"]], "numeric_nodes": ["overall_rating"],
                                    "categorical_nodes": ["rating"], "length_nodes": ["cleaned_review"],
                                    "label": "rating"})
    report = evaluate(held_out, synthetic, eval_spec, RecordGrammar.from_text(derive_grammar(spec)),
                      Encoder(eval_spec.encoder))
    out = {m.name: m.value for m in report.metrics}
    private = set(frame_to_texts(train.astype({"rating": "Int64"}), spec))
    texts = frame_to_texts(synthetic.astype({"rating": "Int64"}), spec)
    out["copies_of_private_rows_share"] = sum(t in private for t in texts) / max(1, len(texts))
    out["distinct_records"] = len(set(texts))
    return out


def setting(row: dict) -> tuple:
    """What a rerun replaces: rows before the variation choice existed used the whole-record rewrite."""
    variation = row.get("record_variation", "rewrite" if row.get("iterations") else None)
    return (row["road"], row.get("n"), row.get("iterations"), row.get("seed"), variation, row.get("fields_changed"),
            row.get("field_weight") or 0.0, row.get("variations") or 1, bool(row.get("keep_parents")),
            row.get("train_steps") or DEMO_STEPS, row.get("train_batch") or DEMO_BATCH, row.get("budget_share") or 0.5,
            bool(row.get("no_description")), row.get("train_dtype") or "fp32", row.get("generate_dtype") or "fp32",
            tuple(sorted((row.get("field_temperature") or {}).items())), bool(row.get("field_temperature_in_variations")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--roads", nargs="+", default=list(ROADS), choices=ROADS)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--record-variation", default="fields", choices=["fields", "rewrite"])
    ap.add_argument("--fields-changed", type=float, default=0.5, help="evolve.fields_changed")
    ap.add_argument("--field-weight", type=float, default=0.0, help="evolve.field_weight (0: votes on the text alone)")
    ap.add_argument("--variations", type=int, default=1, help="evolve.variations (children per drawn parent)")
    ap.add_argument("--keep-parents", action="store_true", help="evolve.keep_parents (the drawn parents stay in "
                    "the next pool)")
    ap.add_argument("--steps", type=int, help=f"train.steps of the DP fine-tuning (default: the demo's {DEMO_STEPS})")
    ap.add_argument("--batch", type=int, help="train.expected_batch_size of the DP fine-tuning (default: the "
                    f"demo's {DEMO_BATCH})")
    ap.add_argument("--budget-share", type=float, help="evolve.budget_share: fine-tune+evolve's share of ε for the "
                    "fine-tuning (default 0.5)")
    ap.add_argument("--no-description", action="store_true", help="leave spec.description out of the prompt: "
                    "26%% fewer tokens in every DP forward (the prompt is 89 of a record's ~162 tokens with it)")
    ap.add_argument("--bf16", action="store_true", help="train.dtype = bf16 (autocast) for the DP fine-tuning")
    ap.add_argument("--generate-bf16", action="store_true", help="generate.dtype = bf16 (decoding)")
    ap.add_argument("--field-temperature", nargs="+", default=[], metavar="FIELD=T",
                    help="generate.field_temperature, e.g. product_name=0.4 (first draw and variations)")
    ap.add_argument("--resume", action="store_true", help="resume an interrupted run of the same setting (its seconds "
                    "then count only this part)")
    ap.add_argument("--trained-in", type=Path, help="a run folder of the same training settings (sampling settings "
                    "may differ): its DP checkpoints are copied in and resumed, so no training is repeated (the row's "
                    "seconds then count sampling and evolution only)")
    args = ap.parse_args()
    field_temperature = {name: float(t) for name, t in (item.split("=", 1) for item in args.field_temperature)}
    from synth.evolution import first_draw
    from synth.pipeline import run
    from synth.run_config import build_config

    full = pd.read_csv(WATER)
    train, held_out = full.iloc[:1500], full.iloc[1500:].reset_index(drop=True)
    WORK.mkdir(parents=True, exist_ok=True)
    train.to_csv(WORK / "train.csv", index=False)
    saved = json.loads(OUT.read_text()) if OUT.exists() else {"runs": []}
    rows = saved["runs"]
    if not any(r["road"] == "real" for r in rows):
        rows.append({"road": "real", "note": "500 of the private rows vs the held-out rows",
                     **score(train, held_out, train.sample(500, random_state=0).reset_index(drop=True))})
    for road in args.roads:
        start = time.time()
        run_config = build_config(config(road, args.n, args.iterations, args.seed, args.record_variation,
                                         args.fields_changed, args.field_weight, args.resume, args.variations,
                                         args.keep_parents, args.steps, args.batch, args.budget_share,
                                         args.no_description, args.bf16, args.generate_bf16, field_temperature))
        if args.trained_in:  # the same DP fine-tuning, finished: resumed, not repeated
            target = Path(run_config.output.dir) / "checkpoints"
            if args.trained_in.resolve() == target.parent.resolve():
                raise SystemExit(f"--trained-in {args.trained_in} is this setting's own run folder (the folder name "
                                 "does not hold --iterations): copy it to another name first, or use --resume")
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(args.trained_in / "checkpoints", target)
            run_config.output.overwrite = False
        result = run(run_config, progress=False)
        evolving = road != "fine-tune"
        row = {"road": road, "n": args.n, "iterations": args.iterations if evolving else None,
               "record_variation": args.record_variation if evolving else None,
               "fields_changed": args.fields_changed if evolving and args.record_variation == "fields" else None,
               "field_weight": args.field_weight if evolving else None,
               "variations": args.variations if evolving else None,
               "keep_parents": args.keep_parents if evolving else None,
               "budget_share": (args.budget_share or 0.5) if road == "fine-tune+evolve" else None,
               "train_steps": (args.steps or DEMO_STEPS) if road != "evolve" else None,
               "train_batch": (args.batch or DEMO_BATCH) if road != "evolve" else None,
               "no_description": args.no_description,
               "train_dtype": ("bf16" if args.bf16 else "fp32") if road != "evolve" else None,
               "generate_dtype": "bf16" if args.generate_bf16 else "fp32",
               "field_temperature": field_temperature or None,
               "trained_in": str(args.trained_in) if args.trained_in else None,
               "seed": args.seed, "epsilon": result["epsilon"], "seconds": round(time.time() - start, 1),
               "resumed": args.resume,
               "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),  # of the process so far
               "stages": [s["stage"] for s in result["card"]["privacy"]["stages"]],
               "command": " ".join(sys.argv), **score(train, held_out, result["synthetic"])}
        drawn = first_draw(Path(run_config.output.dir) / "evolution") if evolving else None
        if drawn:  # the generator alone (DP fine-tuned, or public for evolve), before any histogram
            sample = pd.DataFrame(drawn).sample(min(args.n, len(drawn)), random_state=0).reset_index(drop=True)
            row["first_draw"] = score(train, held_out, sample)
        print(json.dumps(row), flush=True)
        rows = [r for r in rows if setting(r) != setting(row)] + [row]
        OUT.write_text(json.dumps({"runs": rows}, indent=2))


if __name__ == "__main__":
    main()
