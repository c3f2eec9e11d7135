"""Sampling temperature of a DP-fine-tuned Water generator (issue 16's diagnosis; post-processing, no privacy cost).

    python bench/water_temperature.py bench/work/water_evolve/<run> --temperatures 0.8 0.6 0.4

Loads the generator a ``bench/water_evolve.py`` run saved (``<run>/generator``: the DP-fine-tuned model,
before any histogram), samples ``--n`` records at each temperature and scores them against the held-out
rows exactly as ``bench/water_evolve.py`` scores its rows.  The question: do colder draws write product
names that look like Flipkart's (the field that keeps k-NN precision low), and at what cost in recall?
Results are added to ``bench/results/water_temperature_cpu.json``.
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
sys.path.insert(0, str(ROOT / "bench"))
OUT = ROOT / "bench" / "results" / "water_temperature_cpu.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a bench/water_evolve.py run folder (it holds generator/)")
    ap.add_argument("--temperatures", type=float, nargs="+", default=[0.8, 0.6, 0.4])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bf16", action="store_true", help="decode on a bf16 copy (generate.dtype)")
    ap.add_argument("--field-temperature", nargs="+", default=[], metavar="FIELD=T",
                    help="generate.field_temperature, e.g. product_name=0.4: those fields at their own temperature, "
                    "the others at each of --temperatures")
    args = ap.parse_args()
    fields = {name: float(t) for name, t in (item.split("=", 1) for item in args.field_temperature)}
    from water_evolve import WATER, score

    from synth.records.generator import RecordGenerator

    full = pd.read_csv(WATER)
    train, held_out = full.iloc[:1500], full.iloc[1500:].reset_index(drop=True)
    generator = RecordGenerator.from_pretrained(args.run / "generator")
    rows = json.loads(OUT.read_text())["rows"] if OUT.exists() else []
    for temperature in args.temperatures:
        start = time.time()
        frame, stats = generator.sample(args.n, batch_size=100, temperature=temperature, seed=args.seed,
                                        progress=False, dtype="bf16" if args.bf16 else "fp32", field_temperature=fields)
        names = frame["product_name"].astype(str)
        row = {"run": str(args.run.relative_to(ROOT) if args.run.is_absolute() else args.run),
               "temperature": temperature, "field_temperature": fields or None, "n": args.n, "seed": args.seed, "bf16": args.bf16,
               "seconds": round(time.time() - start, 1), "records": len(frame),
               "names_ending_like_flipkart": float(names.str.endswith(("Bottle Reviews", "Flask Reviews")).mean()),
               "distinct_names": int(names.nunique()), "command": " ".join(sys.argv),
               **score(train, held_out, frame)}
        print(json.dumps({k: v for k, v in row.items() if not isinstance(v, dict)}), flush=True)
        rows = [r for r in rows if (r["run"], r["temperature"], r.get("field_temperature"), r["n"], r["seed"], r["bf16"])
                != (row["run"], temperature, row["field_temperature"], args.n, args.seed, args.bf16)] + [row]
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps({"rows": rows}, indent=2))
    print("| temperature | fields apart | k-NN P / R | KND | rating TV | review length W1 | Flipkart-like names | distinct names |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if r["run"] == rows[-1]["run"]:
            apart = ", ".join(f"{k} {v:g}" for k, v in (r.get("field_temperature") or {}).items()) or "none"
            print(f"| {r['temperature']:g} | {apart} | {r['knn_precision']:.3f} / {r['knn_recall']:.3f} | {r['knd/mean']:.3f} | "
                  f"{r['am/tv/category/rating']:.3f} | {r['am/w1/length/cleaned_review']:.2f} | "
                  f"{r['names_ending_like_flipkart']:.2f} | {r['distinct_names']} |")


if __name__ == "__main__":
    main()
