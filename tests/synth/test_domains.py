"""DP domain estimates (category lists, ranges, text lengths): the mechanisms' statistics, their
place in the one ledger and the card, and that nothing is read from the private data unless paid for."""

from __future__ import annotations

import json
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from synth.domains import (
    OTHER_CATEGORY,
    estimate_categories,
    estimate_max_chars,
    estimate_range,
    one_row_per_unit,
)
from synth.pipeline import run
from synth.run_config import build_config
from synth.spec import DatasetSpec
from trainer.accounting import PrivacyLedger, epsilon
from trainer.errors import ConfigError

from .specs import WATER


def test_partition_selection_threshold_and_release_rate_of_a_singleton():
    values = pd.Series(["a"] * 400 + ["b"] * 200 + ["lonely"])
    sigma, sel = 4.0, 0.05
    kept, tau, inside = estimate_categories(values, sigma, sel, np.random.default_rng(0))
    assert tau == pytest.approx(1 + sigma * NormalDist().inv_cdf(1 - sel))
    assert kept[:2] == ["a", "b"]
    assert abs(inside - 600) < 4 * sigma * np.sqrt(2)  # the released values' noisy counts: ~600 rows inside
    # a value one row holds is released with probability selection_delta (here 5 %, measured)
    rng = np.random.default_rng(1)
    released = sum("lonely" in (estimate_categories(pd.Series(["lonely"]), sigma, sel, rng)[0] or [])
                   for _ in range(4000))
    assert released / 4000 == pytest.approx(sel, abs=0.012)
    with pytest.raises(ValueError):
        estimate_categories(values, 0.0, sel, rng)


def test_range_spans_the_bins_above_the_noise_and_cuts_rare_outliers():
    rng = np.random.default_rng(0)
    ratings = pd.Series([1, 2, 3, 4, 5] * 200 + [1_000_000])  # one outlier row
    assert estimate_range(ratings, True, 5.0, rng)[0] == [1, 5]
    floats = pd.Series(np.linspace(3.1, 4.6, 1000))
    assert estimate_range(floats, False, 5.0, rng)[0] == [3.0, 5.0]
    big = pd.Series(np.full(500, 5000.0))  # geometric bins beyond 16: 5000 lies in [2^12.25, 2^12.5)
    lo, hi = estimate_range(big, False, 5.0, rng)[0]
    assert lo <= 5000 < hi and hi / lo == pytest.approx(2 ** 0.25)
    assert estimate_range(pd.Series([7, 8]), True, 5.0, rng)[0] is None  # two rows never clear the noise
    # 1,000 ages spread over 17..90 (~14 rows per value): the bins beyond 16 are wide enough to clear σ = 10
    # (unit bins up to 1024 released nothing, or one value)
    lo, hi = estimate_range(pd.Series(rng.integers(17, 91, 1000)), True, 10.0, rng)[0]
    assert lo <= 23 and hi >= 75
    # a lone bin that barely clears the threshold far from the data (noise: ~5 % of estimates have one;
    # or a few outliers) does not stretch the range; a real distant cluster does
    few = pd.Series([30] * 300 + [40] * 300 + [2_000_000] * 25)  # 25 rows: above τ ≈ 19.5, below 2τ
    assert estimate_range(few, True, 5.0, rng)[0][1] < 100
    many = pd.Series([30] * 300 + [40] * 300 + [2_000_000] * 200)
    assert estimate_range(many, True, 5.0, rng)[0][1] > 2_000_000


def test_max_chars_is_the_longest_length_many_rows_reach():
    rng = np.random.default_rng(0)
    texts = pd.Series(["x" * n for n in [5, 10, 40] * 300] + ["y" * 5000])
    assert estimate_max_chars(texts, 5.0, rng)[0] == 40


def test_user_level_counts_one_row_per_user():
    frame = pd.DataFrame({"v": ["a"] * 1000 + ["b", "c"]})
    units = ["heavy"] * 1000 + ["u1", "u2"]
    rows = one_row_per_unit(frame, units, np.random.default_rng(0))
    assert len(rows) == 3 and set(rows["v"]) >= {"b", "c"}


def test_ledger_extra_delta_comes_out_of_the_accountants_delta():
    ledger = PrivacyLedger(delta=1e-5)
    ledger.record("domain:x", noise_multiplier=5.0, sample_rate=1.0, extra_delta=1e-6)
    ledger.record("train", noise_multiplier=1.0, sample_rate=0.01, steps=100)
    assert ledger.accountant_delta == pytest.approx(9e-6)
    assert ledger.epsilon() == pytest.approx(epsilon(ledger.history, delta=9e-6))
    assert ledger.epsilon() > epsilon(ledger.history, delta=1e-5)
    with pytest.raises(ConfigError, match="half of"):
        ledger.record("domain:y", noise_multiplier=5.0, sample_rate=1.0, extra_delta=5e-6)
    assert PrivacyLedger.from_dict(json.loads(json.dumps(ledger.to_dict()))).epsilon() == ledger.epsilon()


def test_spec_refuses_an_estimate_of_a_declared_domain_or_under_a_user_grammar():
    with pytest.raises(ConfigError, match="drop the declared"):
        DatasetSpec.from_dict({"columns": [{"name": "r", "type": "integer", "min": 1, "estimate": True}]})
    with pytest.raises(ConfigError, match="user grammar"):
        DatasetSpec.from_dict({"grammar": "g.lark", "columns": [{"name": "t", "estimate": True}]})


# ---------------------------------------------------------------------- end to end
COLUMNS = [{"name": "rating", "type": "integer"}, {"name": "title", "type": "categorical"},
           {"name": "cleaned_review", "nullable": True, "max_chars": 40}]


def _config(tmp_path, data, estimate: bool, name: str):
    columns = [{**c, "estimate": True} if estimate and c["name"] != "cleaned_review" else c for c in COLUMNS]
    if not estimate:  # a categorical column needs its list declared or estimated: here, free text
        columns = [{**c, "type": "text"} if c.get("type") == "categorical" else c for c in columns]
    return build_config({
        "data": {"path": str(data), "invalid_rows": "clip"}, "spec": {"serialization": "json", "columns": columns, "estimate_noise": 3.0},
        "model": {"model": "scratch"},
        "train": {"target_epsilon": 4.0, "steps": 2, "expected_batch_size": 32, "physical_batch_size": 16,
                  "progress": False, "seed": 0, "insecure_seed": True},
        "generate": {"n": 8, "batch_size": 8, "seed": 1}, "output": {"dir": str(tmp_path / name)}})


@pytest.mark.skipif(not WATER.exists(), reason="shared data not present")
def test_estimated_domains_are_paid_for_stated_and_constrain_generation(tmp_path):
    data = tmp_path / "water.csv"
    private = pd.read_csv(WATER).head(600)
    private.to_csv(data, index=False)
    config = _config(tmp_path, data, True, "run")
    result = run(config, progress=False)
    card = json.loads((tmp_path / "run" / "export" / "dpsynth.json").read_text())
    p = card["privacy"]
    assert [s["stage"] for s in p["stages"]] == ["domain:rating", "domain:title", "train"]
    # only the category list pays partition selection's extra δ: 10 % of δ
    assert p["stages"][1]["extra_delta"] == pytest.approx(0.1 * p["delta"]) and p["stages"][0]["extra_delta"] == 0
    history = [(s["noise_multiplier"], s["sample_rate"], s["steps"]) for s in p["stages"]]
    assert p["epsilon"] == pytest.approx(epsilon(history, delta=0.9 * p["delta"]))
    assert p["epsilon"] <= 4.0 + 1e-6  # estimates + training compose to the target
    # what was estimated is stated as paid for, never as declared public
    assert any("title: category list estimated with DP" in f for f in card["estimated_with_dp"])
    assert any("rating: range [1, 5] estimated with DP" in f for f in card["estimated_with_dp"])
    assert not any(f.startswith(("title", "rating")) for f in card["declared_public"])
    assert "Estimated from the private data with DP" in (tmp_path / "run" / "export" / "README.md").read_text()
    # the generator is constrained to the estimated list, which holds only frequent real titles, and
    # "(other)" for the rest (a rare title's row is kept, its title replaced)
    saved = json.loads((tmp_path / "run" / "generator" / "dpsynth_config.json").read_text())
    categories = next(c for c in saved["spec"]["columns"] if c["name"] == "title")["categories"]
    counts = private["title"].value_counts()
    assert categories[-1] == OTHER_CATEGORY and set(categories[:-1]) <= set(counts[counts >= 5].index)
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())["domain"]
    assert report["outside_domain_by_column"]["title"] > 0 and report["rows_dropped"] == 0
    assert set(result["synthetic"]["title"]) <= set(categories)
    # a resumed run re-uses the saved estimates instead of releasing new ones
    saved_estimates = (tmp_path / "run" / "domains.json").read_text()
    assert json.loads(saved_estimates)[1]["value"] == categories[:-1]


@pytest.mark.skipif(not WATER.exists(), reason="shared data not present")
def test_without_estimates_nothing_in_the_generator_depends_on_the_private_values(tmp_path):
    """Train on the data and on a copy whose text values all differ: the grammar, the tokenizer and
    the saved spec are identical, so no category list, range or vocabulary was read from the rows."""
    private = pd.read_csv(WATER).head(200)
    other = private.assign(title=["t" + str(i) for i in range(200)], rating=7,
                           cleaned_review=private["cleaned_review"].str.upper())
    paths = []
    for name, frame in (("a", private), ("b", other)):
        data = tmp_path / f"{name}.csv"
        frame.to_csv(data, index=False)
        run(_config(tmp_path, data, False, name), progress=False)
        paths.append(tmp_path / name / "generator")
    for file in ("grammar.lark", "dpsynth_config.json"):
        assert (paths[0] / file).read_text() == (paths[1] / file).read_text()
    cards = [json.loads((tmp_path / n / "export" / "dpsynth.json").read_text()) for n in "ab"]
    assert cards[0]["declared_public"] == cards[1]["declared_public"]
    assert [s["stage"] for s in cards[0]["privacy"]["stages"]] == ["train"]
