"""Text metrics: overlap against brute force, MAUVE's extremes, the whole text report on the drug reviews."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from evaluation.metrics.overlap import SuffixAutomaton, longest_common_substrings, ngram_overlap, word_ngrams
from evaluation.text import mauve_score

from ..synth.specs import SHARED


def _brute_lcs(query: str, corpus: list[str]) -> int:
    best = 0
    for doc in corpus:
        for i in range(len(query)):
            for j in range(i + best + 1, len(query) + 1):
                if query[i:j] in doc:
                    best = j - i
                else:
                    break
    return best


def test_longest_common_substring_matches_brute_force():
    rng = random.Random(0)
    for _ in range(200):
        corpus = ["".join(rng.choice("abc ") for _ in range(rng.randint(0, 30))) for _ in range(rng.randint(1, 4))]
        query = "".join(rng.choice("abcd ") for _ in range(rng.randint(0, 25)))
        assert longest_common_substrings([query], corpus)[0] == _brute_lcs(query, corpus)
    # the separator keeps documents apart: "ab" + "cd" does not make "bc"
    assert SuffixAutomaton("ab\x00cd").longest_common_substring("bc") == 1


def test_ngram_overlap_by_hand():
    ref = ["the quick brown fox jumps"]
    assert word_ngrams("The quick, brown fox", 2) == {("the", "quick"), ("quick", "brown"), ("brown", "fox")}
    assert ngram_overlap(["the quick brown cat"], ref, n=2) == pytest.approx(2 / 3)
    assert ngram_overlap(["too short"], ref, n=8) is None


def test_mauve_is_high_for_one_distribution_and_low_for_two():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 16)), rng.normal(size=(200, 16))
    assert mauve_score(a, b, seed=0).value > 0.9
    assert mauve_score(a, b + 3.0, seed=0).value < 0.1
    assert mauve_score(a[:5], b, seed=0).value is None


@pytest.mark.skipif(not (SHARED / "drugs_train.csv").exists(), reason="shared data not present")
def test_text_report_on_drug_reviews_sanity():
    """Synthetic = a copy of private documents: every copy is exact and its longest common substring is the
    whole document; held-out real documents are the reference and share far less."""
    from evaluation import Encoder, evaluate_text

    private = pd.read_csv(SHARED / "drugs_train.csv").head(150)
    heldout = pd.read_csv(SHARED / "drugs_test.csv").head(80)
    copied = private.sample(60, random_state=0)
    report = evaluate_text(private, heldout, copied, text="review", labels=["rating"], encoder=Encoder())
    v = report.value
    assert v("memorisation/exact_copy_share") == 1.0
    assert v("memorisation/longest_common_substring_chars") == pytest.approx(copied["review"].str.len().mean())
    assert v("memorisation/8gram_overlap") == 1.0 and v("memorisation/heldout_8gram_overlap") < 0.2
    assert v("memorisation/heldout_longest_common_substring_chars") < 80
    assert 0 <= v("mauve") <= 1 and v("knn_precision") > 0.5
    assert v("utility/rating/majority_class_accuracy") is not None and v("am/tv/rating") < 0.3
    assert "MAUVE" in report.summary() or "mauve" in report.summary()
