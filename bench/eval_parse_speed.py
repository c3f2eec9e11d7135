"""Records/s of grammar parsing + node extraction (evaluation.RecordGrammar) on the Water data.

    python bench/eval_parse_speed.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "evaluation"))


def main() -> None:
    from test_grammar_and_metrics import WATER_GRAMMAR, _water_texts

    from evaluation import RecordGrammar

    grammar = RecordGrammar.from_text(WATER_GRAMMAR)
    texts = _water_texts()
    grammar.parse(texts[0])
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        ok = sum(grammar.parse(t).ok for t in texts)
        best = max(best, len(texts) / (time.perf_counter() - t0))
    print(f"{grammar.algorithm}: {len(texts)} Water records, {ok} parsed; best of 3: {best:,.0f} records/s "
          "(parse + node extraction)")


if __name__ == "__main__":
    main()
