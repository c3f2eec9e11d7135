"""Which Water field keeps synthetic records away from the real ones?  (issue 16's diagnosis)

    python bench/water_field_swap.py bench/work/water_evolve/<run>/export/synthetic.csv

k-NN precision / recall against the held-out rows (``../shared/data/water_dev.csv`` rows 1500-1999, as
``bench/water_evolve.py`` scores them: MiniLM on a record's field values) of the synthetic records as
they are, and with one field (or a pair) replaced by the values of random *private* rows (0-1499).
A field whose real values lift the scores most is the one the generator gets wrong.  The second row
asks whether real-vs-real precision needs the very product names of the held-out rows (it does not).  Diagnostic only:
the swapped records read private rows and are never an output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WATER = ROOT.parent / "shared" / "data" / "water_dev.csv"
FIELDS = ["product_name", "overall_rating", "rating", "title", "cleaned_review"]
SWAPS = (["product_name"], ["title"], ["cleaned_review"], ["overall_rating", "rating"], ["product_name", "title"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("synthetic", type=Path, help="a CSV of synthetic Water records (the export's synthetic.csv)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from evaluation import Encoder, EvalSpec
    from evaluation.metrics.embedding import knn_precision_recall
    from evaluation.records import content_text

    full = pd.read_csv(WATER)
    private, held_out = full.iloc[:1500].reset_index(drop=True), full.iloc[1500:].reset_index(drop=True)
    synthetic = pd.read_csv(args.synthetic)[FIELDS]
    encoder = Encoder(EvalSpec.from_dict({"columns": FIELDS}).encoder)

    def embed(frame: pd.DataFrame) -> np.ndarray:
        return encoder.encode_dataset([content_text(r, FIELDS) for r in frame.to_dict("records")])

    real = embed(held_out)

    def scores(frame: pd.DataFrame) -> str:
        m = {x.name: x.value for x in knn_precision_recall(real, embed(frame))}
        return f"{m['knn_precision']:.3f} / {m['knn_recall']:.3f}"

    rng = np.random.default_rng(args.seed)
    print("| synthetic records | k-NN P / R |\n|---|---:|")
    n = len(synthetic)
    print(f"| {n} private rows (real vs real) | {scores(private.sample(n, random_state=args.seed))} |")
    unseen = private[~private["product_name"].isin(set(held_out["product_name"]))]
    print(f"| the {len(unseen)} private rows whose product name no held-out row has | {scores(unseen)} |")
    print(f"| as generated ({n}) | {scores(synthetic)} |")
    for fields in SWAPS:
        swapped = synthetic.copy()
        donors = rng.integers(0, len(private), len(swapped))
        for f in fields:
            swapped[f] = private[f].to_numpy()[donors]
        print(f"| with private {' + '.join(fields)} | {scores(swapped)} |")


if __name__ == "__main__":
    main()
