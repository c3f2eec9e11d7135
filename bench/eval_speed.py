"""Wall time of a full evaluation: 2,000 real vs 2,000 synthetic Water records, cold encoder cache.

The synthetic side is the real data with its review column shuffled (every record
text new to the encoder), so nothing is shared between the two sides' embeddings.

    python bench/eval_speed.py            # prints the time per phase and the total
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "evaluation"))


def main() -> None:
    from test_grammar_and_metrics import WATER, WATER_GRAMMAR

    from evaluation import Encoder, EvalSpec, RecordGrammar, evaluate, load_table

    t0 = time.perf_counter()
    real = load_table(WATER)
    synthetic = real.copy()
    synthetic["cleaned_review"] = synthetic["cleaned_review"].sample(frac=1, random_state=0).to_numpy()
    spec = EvalSpec(columns=["product_name", "overall_rating", "title", "cleaned_review"], missing="nan",
                    key_nodes=[["title", "cleaned_review"]], numeric_nodes=["overall_rating"], label="rating")
    grammar = RecordGrammar.from_text(WATER_GRAMMAR)
    encoder = Encoder()
    t_load = time.perf_counter() - t0
    report = evaluate(real, synthetic, spec, grammar, encoder)
    total = time.perf_counter() - t0
    result = {"real": len(real), "synthetic": len(synthetic), "load_s": round(t_load, 1),
              "evaluate_s": report.info["seconds"], "total_s": round(total, 1),
              "texts_encoded": encoder.texts_encoded}
    print(report.summary())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
