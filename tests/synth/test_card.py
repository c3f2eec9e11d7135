"""The card's plain-words privacy section: the odds ratio, the scale with its source, δ against 1/N,
each stage's running ε, and what the DP domains cannot reproduce (from released counts only)."""

from __future__ import annotations

import math

import pytest

from synth.card import privacy_block, render_card
from trainer import PrivacyLedger
from trainer.accounting import epsilon


def _card(ledger: PrivacyLedger) -> str:
    return render_card({"privacy": privacy_block(ledger), "rows": 10, "data_file": "synthetic.csv",
                        "software_version": "test", "model": "m", "generation": {
                            "requested": 10, "emitted": 10, "hit_limit": 0}})


def _ledger(sigma: float, n: int = 1000) -> PrivacyLedger:
    ledger = PrivacyLedger(delta=1e-5, accountant="rdp", n_units=n)
    ledger.record("domain:city", noise_multiplier=10.0, sample_rate=1.0, steps=1, extra_delta=1e-7,
                  estimate="categories", result="city: category list estimated with DP (3 values)",
                  nullable=False, inside_count=900.0)
    ledger.record("train", noise_multiplier=sigma, sample_rate=0.05, steps=100)
    return ledger


@pytest.mark.parametrize("sigma, grade", [(5.0, "strong"), (0.9, "reasonable"), (0.45, "weak")])
def test_the_card_says_what_epsilon_means_on_a_sourced_scale(sigma, grade):
    ledger = _ledger(sigma)
    eps = ledger.epsilon()
    text = _card(ledger)
    assert f"e^ε = {math.exp(eps):.3g}" in text and f"is **{grade}**" in text
    assert "Ponomareva et al., *How to DP-fy ML*, JAIR 2023" in text
    assert "N = 1000 examples were read" in text and "0.01 × 1/N" in text
    assert "`city` (categories): about 10% of rows" in text  # 1 - 900 / 1000, never the true count
    assert "inside_count" not in text  # a detail for the sentence above, not the stage table


def test_each_stage_shows_the_running_epsilon_of_the_stages_so_far():
    ledger = _ledger(1.0)
    block = privacy_block(ledger)
    first, second = block["stages"]
    assert first["epsilon_after"] == pytest.approx(epsilon([(10.0, 1.0, 1)], delta=1e-5 - 1e-7, accountant="rdp"))
    assert second["epsilon_after"] == pytest.approx(block["epsilon"])
    assert block["domains"] == [{"column": "city", "kind": "categories", "share_outside": pytest.approx(0.1)}]


def test_a_delta_not_below_one_over_n_is_called_out():
    ledger = PrivacyLedger(delta=0.01, accountant="rdp", n_units=200)
    ledger.record("train", noise_multiplier=1.0, sample_rate=0.1, steps=10)
    assert "δ is not below 1/N" in _card(ledger)
