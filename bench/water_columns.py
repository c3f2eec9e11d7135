"""Water at ε = 4: the column model for rating / overall_rating + the DP LM for the text, against the
LM-only records road, both scored on held-out rows (issue 15).

    python bench/water_columns.py                 # both roads, one seed
    python bench/water_columns.py --seeds 0 1 2   # both roads, three seeds (about 40 minutes on 2 cores)
    python bench/water_columns.py --roads aim --budget-share 0.25
    python bench/water_columns.py --roads pairs --seeds 0 1 2 3 4   # the pairs column model (PRV ledger)
    python bench/water_columns.py --table --column-road pairs --seeds 0 1 2 3 4
    python bench/water_columns.py --roads lm-cond --seeds 0 1   # the LM road given the rating in its prompt

``../shared/data/water_dev.csv``: rows 0-1499 are private, rows 1500-1999 held out.  Both roads use
the demo's model and training settings (SmolLM2-135M-Instruct LoRA, 12 DP steps of 24 rows,
``synth/data/demo.toml``) and write 200 records.  Scored with ``evaluation.evaluate`` against the
held-out rows: the rating marginal (total variation), the overall_rating marginal (1-Wasserstein),
SDMetrics' column shapes and column pair trends on (overall_rating, rating), KND of
title ~ cleaned_review, k-NN precision / recall, CFG-PR.  Results:
``bench/results/water_columns_cpu.json``.
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
WATER = ROOT.parent / "shared" / "data" / "water_dev.csv"
WORK = ROOT / "bench" / "work" / "water_columns"
OUT = ROOT / "bench" / "results" / "water_columns_cpu.json"


def config(road: str, train_csv: Path, seed: int, share: float, coarse_groups: int | None = None) -> dict:
    from synth.config_files import read_config

    raw = read_config(ROOT / "synth" / "data" / "demo.toml")
    raw["data"] = {"path": str(train_csv), "invalid_rows": "clip"}
    raw["train"].update({"target_epsilon": 4.0, "seed": seed, "insecure_seed": True, "progress": False})
    raw["generate"].update({"seed": seed})
    raw["output"] = {"dir": str(WORK / f"{road}_seed{seed}"), "overwrite": True}
    raw.pop("evaluation", None)
    if road == "lm-cond":  # the LM road with the rating in its prompt (a DP histogram), as the column road's prompt
        # has it; overall_rating is a float, which a conditioning histogram cannot take (no finite public
        # domain), so the LM still writes that one itself
        raw["spec"]["conditioning"] = ["rating"]
    if road in ("aim", "pairs"):
        for col in raw["spec"]["columns"]:
            if col["name"] == "overall_rating":
                col.update({"bins": 40, "decimals": 1})  # 0.1-wide bins on [1, 5]
        raw["columns"] = {"model": road, "budget_share": share}
        if coarse_groups is not None:
            raw["columns"]["coarse_groups"] = coarse_groups
    return raw


def score(held_out: pd.DataFrame, synthetic: pd.DataFrame) -> dict:
    from evaluation import Encoder, EvalSpec, RecordGrammar, evaluate
    from synth.records.grammar import derive_grammar
    from synth.spec import DatasetSpec

    raw = config("lm", WORK / "train.csv", 0, 0.5)
    spec = DatasetSpec.from_dict(raw["spec"])
    eval_spec = EvalSpec.from_dict({"columns": spec.names, "serialization": spec.serialization,
                                    "key_nodes": [["title", "cleaned_review"]], "numeric_nodes": ["overall_rating"],
                                    "categorical_nodes": ["rating"], "numeric_columns": ["overall_rating", "rating"],
                                    "table_columns": ["overall_rating", "rating"]})
    report = evaluate(held_out, synthetic, eval_spec, RecordGrammar.from_text(derive_grammar(spec)),
                      Encoder(eval_spec.encoder))
    out = {m.name: m.value for m in report.metrics}
    # the rating pair's trend: SDMetrics' report skips it (real correlation 0.14, under its threshold),
    # so its correlation similarity is asked for directly
    from sdmetrics.column_pairs import CorrelationSimilarity

    pair = ["overall_rating", "rating"]
    got = synthetic[pair].astype(float).dropna()
    out["pair/overall_rating~rating_correlation_similarity"] = float(
        CorrelationSimilarity.compute(held_out[pair].astype(float), got)) if len(got) > 2 else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--roads", nargs="+", default=["aim", "lm"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--budget-share", type=float, default=None,
                    help="the column road's columns.budget_share (default: the config default)")
    ap.add_argument("--coarse-groups", type=int, default=None,
                    help="the column road's columns.coarse_groups (default: the config default)")
    ap.add_argument("--column-road", default="aim", choices=["aim", "pairs"],
                    help="--table: the column road shown beside the LM road")
    ap.add_argument("--rescore", action="store_true", help="score the roads' existing exports again, no training")
    ap.add_argument("--table", action="store_true", help="print the README's table from the results file and stop")
    args = ap.parse_args()
    if args.budget_share is None:
        from synth.run_config import ColumnsSection

        args.budget_share = ColumnsSection().budget_share
    if args.table:
        print(markdown(json.loads(OUT.read_text())["rows"], args.seeds, args.coarse_groups, args.budget_share,
                       args.column_road))
        return
    from synth.pipeline import run
    from synth.run_config import build_config

    full = pd.read_csv(WATER)
    train, held_out = full.iloc[:1500], full.iloc[1500:].reset_index(drop=True)
    WORK.mkdir(parents=True, exist_ok=True)
    train.to_csv(WORK / "train.csv", index=False)
    rows = json.loads(OUT.read_text())["rows"] if OUT.exists() else []
    if not any(r["road"] == "real" for r in rows):
        rows.append({"road": "real", "note": "500 of the private rows vs the held-out rows",
                     **score(held_out, train.sample(500, random_state=0).reset_index(drop=True))})
    if args.rescore:
        for r in rows:
            export = WORK / f"{r['road']}_seed{r.get('seed')}" / "export" / "synthetic.csv"
            if r["road"] == "real":
                r.update(score(held_out, train.sample(500, random_state=0).reset_index(drop=True)))
            elif export.exists():
                from evaluation import load_table

                r.update(score(held_out, load_table(export)))
        OUT.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=2))
        return
    for seed, road in ((s, r) for s in args.seeds for r in args.roads):
        start = time.time()
        result = run(build_config(config(road, WORK / "train.csv", seed, args.budget_share, args.coarse_groups)),
                     progress=False)
        column_road = road in ("aim", "pairs")
        row = {"road": road, "seed": seed, "budget_share": args.budget_share if column_road else None,
               "coarse_groups": args.coarse_groups if column_road else None,
               "accountant": result["card"]["privacy"]["accountant"],
               "epsilon": result["epsilon"], "seconds": round(time.time() - start, 1),
               "stages": [s["stage"] for s in result["card"]["privacy"]["stages"]],
               **score(held_out, result["synthetic"])}
        print(json.dumps(row), flush=True)
        rows = [r for r in rows if (r["road"], r.get("seed"), r.get("budget_share"), r.get("coarse_groups")) !=
                (row["road"], row["seed"], row["budget_share"], row["coarse_groups"])] + [row]
        OUT.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=2))
    print(summary(rows))


SUMMARY = {"am/tv/category/rating": "rating TV", "am/w1/value/overall_rating": "overall_rating W1",
           "quality/column_shapes": "column shapes", "pair/overall_rating~rating_correlation_similarity": "pair trend",
           "knd/title~cleaned_review": "KND", "knn_precision": "k-NN precision", "knn_recall": "k-NN recall",
           "am/w1/length/title": "title length W1", "am/w1/length/cleaned_review": "review length W1",
           "cfg_pr": "CFG-PR", "seconds": "seconds"}


def _coarse_groups(frame: pd.DataFrame) -> pd.Series:
    """Each row's columns.coarse_groups (missing: the default; rows before session 11 lack the field)."""
    return frame["coarse_groups"] if "coarse_groups" in frame else pd.Series(None, index=frame.index, dtype=float)


def summary(rows: list[dict]) -> str:
    """Mean ± std over seeds of each road (budget share apart)."""
    frame = pd.DataFrame(rows)
    groups = _coarse_groups(frame)
    frame["road"] = [r if r not in ("aim", "pairs") else f"{r} (share {s}" + (f", coarse_groups {g:g})" if pd.notna(g) else ")")
                     for r, s, g in zip(frame["road"], frame["budget_share"], groups, strict=True)]
    cols = [c for c in SUMMARY if c in frame]
    table = frame.groupby("road")[cols].agg(["mean", "std", "count"])
    return table.rename(columns=SUMMARY).to_string()


LOWER_IS_BETTER = {"am/tv/category/rating", "am/w1/value/overall_rating", "knd/title~cleaned_review",
                   "am/w1/length/title", "am/w1/length/cleaned_review", "seconds"}


def markdown(rows: list[dict], seeds: list[int], coarse_groups: int | None = None, share: float = 0.5,
             column_road: str = "aim") -> str:
    """The README's table: each metric's mean ± std over ``seeds`` for ``column_road`` (at ``share`` and
    ``coarse_groups``) and the LM road, the better mean in bold, the real sample last."""
    frame = pd.DataFrame(rows)
    frame = frame[frame["road"].eq("real") | frame["seed"].isin(seeds)]
    groups = _coarse_groups(frame)
    same = groups.isna() if coarse_groups is None else groups.eq(coarse_groups)
    column = frame[(frame["road"] == column_road) & (frame["budget_share"] == share) & same]
    lm = frame[frame["road"] == "lm"]
    real = frame[frame["road"] == "real"].iloc[0]
    lines = [f"| metric (vs held-out rows) | {column_road} column model + LM ({len(column)} seeds) | LM only ({len(lm)} seeds) | "
             "real (500 private rows) |", "|---|---:|---:|---:|"]
    for key, name in SUMMARY.items():
        a, b = column[key].astype(float), lm[key].astype(float)
        better = (a.mean() < b.mean()) == (key in LOWER_IS_BETTER) if a.mean() != b.mean() else None
        cells = [f"{g.mean():.3f} ± {g.std():.3f}" if key != "seconds" else f"{g.median():.0f}" for g in (a, b)]
        if better is not None and key not in ("seconds", "cfg_pr"):
            cells[0 if better else 1] = f"**{cells[0 if better else 1]}**"
        shown = "–" if key == "seconds" or pd.isna(real.get(key)) else f"{real[key]:.3f}"
        lines.append(f"| {name}{' (lower is better)' if key in LOWER_IS_BETTER else ''} | {cells[0]} | {cells[1]} | "
                     f"{shown} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
