"""Census at ε = 1 and 4: dpsynth's column model (AIM on mbi) vs smartnoise-synth's AIM vs the LM-only
records road, each beside real-vs-real, scored on held-out rows (issue 15).

    python bench/census_columns.py                      # 3 seeds, both ε, every road
    python bench/census_columns.py --seeds 1 --lm-seeds 0 --epsilons 4

``../shared/data/adult.csv``: the first 700 rows train, the last 300 are held out.  The domains are
declared public for every road (the UCI Adult documentation's category lists, stood in for here by
the file's values, and ranges from the documentation); numbers are binned on the same public bins
for both AIMs (smartnoise gets the bin codes; its samples are decoded with dpsynth's decoding), so
the AIM comparison is of the mechanisms.  δ = 1e-5 for every road.  Metrics: SDMetrics
QualityReport (overall = mean of column shapes and column pair trends) against the held-out rows,
and TSTR on income (gradient boosting on one-hot + numeric features, accuracy and ROC AUC on the
held-out rows) beside the majority floor.  smartnoise-synth 1.0.8 pins opacus < 0.15 and mbi < 2,
so it runs in its own venv (``bench/work/snsynth-venv``, made on first use, see ``_snsynth_venv``).
Results: ``bench/results/census_columns_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ADULT = ROOT.parent / "shared" / "data" / "adult.csv"
WORK = ROOT / "bench" / "work" / "census_columns"
VENV = ROOT / "bench" / "work" / "snsynth-venv"
OUT = ROOT / "bench" / "results" / "census_columns_cpu.json"
DELTA = 1e-5
NUMERIC = {"age": (17, 90), "fnlwgt": (10_000, 1_500_000), "education-num": (1, 16), "capital-gain": (0, 99_999),
           "capital-loss": (0, 4_356), "hours-per-week": (1, 99)}
LABEL = "income"


def spec_columns(full: pd.DataFrame) -> list[dict]:
    cols = []
    for c in full.columns:
        if c in NUMERIC:
            cols.append({"name": c, "type": "integer", "min": NUMERIC[c][0], "max": NUMERIC[c][1]})
        else:
            cols.append({"name": c, "type": "categorical", "categories": sorted(full[c].astype(str).unique())})
    return cols


def quality(real: pd.DataFrame, synthetic: pd.DataFrame) -> dict:
    from sdmetrics.reports.single_table import QualityReport

    meta = {"columns": {c: {"sdtype": "numerical" if c in NUMERIC else "categorical"} for c in real.columns}}
    report = QualityReport()
    report.generate(real, synthetic[real.columns], meta, verbose=False)
    props = report.get_properties().set_index("Property")["Score"]
    return {"sdmetrics_overall": float(report.get_score()), "column_shapes": float(props["Column Shapes"]),
            "column_pair_trends": float(props["Column Pair Trends"])}


def tstr(train: pd.DataFrame, test: pd.DataFrame, seed: int, categories: dict[str, list[str]]) -> dict:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import accuracy_score, roc_auc_score

    features = [c for c in test.columns if c != LABEL]

    def x(frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({c: frame[c].astype(float) if c in NUMERIC else
                             pd.Categorical(frame[c].astype(str), categories=categories[c]) for c in features})

    y_test = (test[LABEL].astype(str) == ">50K").astype(int)
    y_train = (train[LABEL].astype(str) == ">50K").astype(int)
    floor = float(max(y_test.mean(), 1 - y_test.mean()))
    if y_train.nunique() < 2:
        return {"tstr_accuracy": floor, "tstr_auc": 0.5, "majority_floor": floor, "note": "one class only"}
    xtr = x(train)
    clf = HistGradientBoostingClassifier(random_state=seed, categorical_features="from_dtype").fit(xtr, y_train)
    xte = x(test)
    return {"tstr_accuracy": float(accuracy_score(y_test, clf.predict(xte))),
            "tstr_auc": float(roc_auc_score(y_test, clf.predict_proba(xte)[:, 1])), "majority_floor": floor}


def run_dpsynth(train_csv: Path, full: pd.DataFrame, eps: float, seed: int, road: str, out: Path) -> pd.DataFrame:
    from synth.pipeline import run
    from synth.run_config import build_config

    raw = {"data": {"path": str(train_csv)}, "spec": {"columns": spec_columns(full)},
           "train": {"target_epsilon": eps, "delta": DELTA, "seed": seed, "insecure_seed": True, "progress": False},
           "generate": {"n": 700, "seed": seed}, "output": {"dir": str(out), "overwrite": True}}
    if road.startswith("aim"):
        raw["columns"] = {"model": "aim", **_road_groups(road)}
    elif road == "pairs":
        raw["columns"] = {"model": "pairs"}
    else:  # today's records road: a from-scratch LM, every column as text under the grammar
        raw["model"] = {"model": "scratch"}
        raw["train"].update({"steps": 80, "expected_batch_size": 64, "physical_batch_size": 32, "learning_rate": 3e-3})
        raw["generate"].update({"batch_size": 100})
    result = run(build_config(raw), progress=False)
    return result["synthetic"].astype({c: "object" for c in full.columns if c not in NUMERIC})


def _road_groups(road: str) -> dict:
    """``aim``: the config default; ``aim-fine``: no coarse pairs; ``aim-groups4``: ``coarse_groups = 4``."""
    if road == "aim":
        return {}
    if road == "aim-fine":
        return {"coarse_groups": 0}
    if road.startswith("aim-groups"):
        return {"coarse_groups": int(road.removeprefix("aim-groups"))}
    raise SystemExit(f"unknown road {road!r}: aim, aim-fine, aim-groups<N>, pairs, smartnoise, smartnoise-observed, "
                     "lm")


def _snsynth_venv() -> Path:
    py = VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(py), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "numpy", "pandas<3", "scipy", "networkx", "jax", "jaxlib", "chex", "optax", "attrs",
                        "Faker", "disjoint-set<0.10", "pyyaml", "sqlalchemy", "antlr4-python3-runtime==4.9.3",
                        "opendp"], check=True)
        subprocess.run([*pip, "--no-deps", "mbi==1.1.0", "smartnoise-synth==1.0.8", "smartnoise-sql==1.0.10"],
                       check=True)
    return py


def run_smartnoise(train: pd.DataFrame, full: pd.DataFrame, eps: float, seed: int, out: Path, *,
                   public_domain: bool = True) -> pd.DataFrame:
    """smartnoise-synth's AIM on the public bin codes; ``public_domain``: its domain is every public code (as
    dpsynth's), else the codes seen in the private rows (smartnoise's default, not DP)."""
    from synth.marginals.coding import column_code
    from synth.spec import ColumnSpec

    codes = {c["name"]: column_code(ColumnSpec(**c)) for c in spec_columns(full)}
    coded = pd.DataFrame({name: code.encode(train[name].reset_index(drop=True)) for name, code in codes.items()})
    out.mkdir(parents=True, exist_ok=True)
    coded.astype(str).to_csv(out / "coded.csv", index=False)
    domain = []
    if public_domain:
        (out / "domain.json").write_text(json.dumps({name: code.size for name, code in codes.items()}))
        domain = [str(out / "domain.json")]
    subprocess.run([str(_snsynth_venv()), str(ROOT / "bench" / "snsynth_aim.py"), str(out / "coded.csv"),
                    str(out / "sample.csv"), str(eps), str(DELTA), str(seed), *domain], check=True,
                   stdout=subprocess.DEVNULL, stderr=open(out / "log.txt", "w"))
    sample = pd.read_csv(out / "sample.csv")
    rng = np.random.default_rng(seed)
    return pd.DataFrame({name: code.decode(sample[name].to_numpy(), rng) for name, code in codes.items()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 4.0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    ap.add_argument("--lm-seeds", type=int, default=1, help="seeds of the (slow) LM-only road")
    ap.add_argument("--roads", nargs="+", default=["aim", "aim-fine", "smartnoise", "smartnoise-observed", "lm"],
                    help="aim-fine: dpsynth's AIM without coarse pairs (columns.coarse_groups = 0, as in AIM's paper); "
                         "aim-groups<N>: with columns.coarse_groups = N; pairs: columns.model = pairs (every pair "
                         "measured once, PRV); "
                         "smartnoise: its AIM on the public domain; smartnoise-observed: on the codes seen in the "
                         "private rows (its default, not DP)")
    ap.add_argument("--table", action="store_true", help="print the README's table from the results file and stop")
    args = ap.parse_args()
    if args.table:
        print(markdown(json.loads(OUT.read_text())["rows"]))
        return
    full = pd.read_csv(ADULT)
    train, test = full.iloc[:700].reset_index(drop=True), full.iloc[700:].reset_index(drop=True)
    WORK.mkdir(parents=True, exist_ok=True)
    train_csv = WORK / "train.csv"
    train.to_csv(train_csv, index=False)
    categories = {c["name"]: c["categories"] for c in spec_columns(full) if c["type"] == "categorical"}
    rows = [{"road": "real (700 training rows vs held-out)", "epsilon": None, "seed": None,
             **quality(test, train), **tstr(train, test, 0, categories), "seconds": None}]
    print(json.dumps(rows[-1]))
    previous = json.loads(OUT.read_text())["rows"] if OUT.exists() else []
    for eps in args.epsilons:
        for road in args.roads:
            for seed in range(args.first_seed, args.first_seed + (args.lm_seeds if road == "lm" else args.seeds)):
                start = time.time()
                where = WORK / f"{road}_eps{eps:g}_seed{seed}"
                if road.startswith("smartnoise"):
                    synthetic = run_smartnoise(train, full, eps, seed, where, public_domain=road == "smartnoise")
                else:
                    synthetic = run_dpsynth(train_csv, full, eps, seed, road, where)
                seconds = time.time() - start
                rows.append({"road": road, "epsilon": eps, "seed": seed, **quality(test, synthetic),
                             **tstr(synthetic, test, seed, categories), "seconds": seconds, "rows": len(synthetic)})
                print(json.dumps(rows[-1]), flush=True)
                kept = [r for r in previous if (r["road"], r["epsilon"], r["seed"]) not in
                        {(x["road"], x["epsilon"], x["seed"]) for x in rows}]
                OUT.write_text(json.dumps({"command": " ".join(sys.argv), "delta": DELTA, "rows": kept + rows},
                                          indent=2))
    print(summary(json.loads(OUT.read_text())["rows"]))


METRICS = ["sdmetrics_overall", "column_shapes", "column_pair_trends", "tstr_accuracy", "tstr_auc"]
ROAD_NAMES = {"aim": "dpsynth, `columns.model = \"aim\"`",
              "aim-fine": "dpsynth AIM without coarse pairs (`columns.coarse_groups = 0`)",
              "pairs": "dpsynth, `columns.model = \"pairs\"` (every pair once, PRV)",
              "smartnoise": "smartnoise-synth 1.0.8 AIM, public domain",
              "smartnoise-observed": "smartnoise-synth 1.0.8 AIM, observed domain (its default; not DP)",
              "lm": "dpsynth LM road (scratch LM, 80 DP steps)"}


def _road_name(road: str) -> str:
    if road.startswith("aim-groups") and road not in ROAD_NAMES:
        n = road.removeprefix("aim-groups")
        return f"dpsynth AIM, coarse pairs in {n} groups (`columns.coarse_groups = {n}`)"
    return ROAD_NAMES.get(road, road)


def markdown(rows: list[dict]) -> str:
    """The README's table: mean ± std over seeds per (ε, road), the real rows last."""
    frame = pd.DataFrame(rows)
    cols = METRICS
    lines = ["| ε | road | seeds | SDMetrics overall | column shapes | column pair trends | TSTR accuracy | TSTR AUC | "
             "seconds |", "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (eps, road), g in frame[frame["epsilon"].notna()].groupby(["epsilon", "road"], sort=True):
        cells = [f"{g[c].mean():.3f} ± {g[c].std():.3f}" if len(g) > 1 else f"{g[c].mean():.3f}" for c in cols]
        lines.append(f"| {eps:g} | {_road_name(road)} | {len(g)} | {' | '.join(cells)} | "
                     f"{g['seconds'].median():.0f} |")
    real = frame[frame["epsilon"].isna()].iloc[0]
    lines.append(f"| – | real: the 700 training rows | – | {' | '.join(f'{real[c]:.3f}' for c in cols)} | – |")
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    frame = pd.DataFrame(rows)
    cols = [*METRICS, "seconds"]
    table = frame.groupby(["epsilon", "road"], dropna=False)[cols].agg(["mean", "std", "count"])
    return table.to_string()


if __name__ == "__main__":
    main()
