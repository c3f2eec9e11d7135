"""Conditioning columns: no loss on the given values, a DP histogram paid for in the one ledger (or a
declared public distribution), generated records carry values from that distribution."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from synth.conditioning import domain, dp_histogram
from synth.pipeline import run
from synth.run_config import build_config
from synth.spec import DatasetSpec

from .specs import WATER

pytestmark = pytest.mark.skipif(not WATER.exists(), reason="shared data not present")

SPEC = {"serialization": "json", "conditioning": ["rating"],
        "columns": [{"name": "rating", "type": "integer", "min": 1, "max": 5}, {"name": "title", "max_chars": 20}]}


def _config(tmp_path, **spec_extra):
    data = tmp_path / "water.csv"
    pd.read_csv(WATER).head(300).to_csv(data, index=False)
    return build_config({
        "data": {"path": str(data), "invalid_rows": "clip"}, "spec": {**SPEC, **spec_extra}, "model": {"model": "scratch"},
        "train": {"target_epsilon": 4.0, "steps": 3, "expected_batch_size": 32, "physical_batch_size": 16,
                  "progress": False, "seed": 0, "insecure_seed": True},
        "generate": {"n": 12, "seed": 1}, "output": {"dir": str(tmp_path / "run")}})


def test_dp_histogram_counts_the_declared_domain_and_adds_noise_of_the_stated_scale():
    spec = DatasetSpec.from_dict(SPEC)
    assert domain(spec) == [(1,), (2,), (3,), (4,), (5,)]
    frame = pd.DataFrame({"rating": pd.array([5] * 600 + [1] * 300 + [9] * 100, dtype="Int64"), "title": "t"})
    exact = dp_histogram(frame, spec, 1e-9, seed=0)  # ~no noise: the counts; 9 is outside the domain
    np.testing.assert_allclose(exact.weights, [1 / 3, 0, 0, 0, 2 / 3], atol=1e-9)
    # noise std: the normalised weights of an all-zero column move by ~σ / total
    draws = [dp_histogram(frame, spec, 30.0, seed=s).weights[2] * 900 for s in range(300)]
    # clipped at 0: the mean of max(0, N(0, 30^2)) is 30 / sqrt(2 pi) ~ 12
    assert 9 < np.mean(draws) < 15


def test_conditioned_run_pays_for_the_histogram_and_masks_the_prompt(tmp_path):
    config = _config(tmp_path)
    result = run(config, progress=False)
    card = json.loads((tmp_path / "run" / "export" / "dpsynth.json").read_text())
    stages = [s["stage"] for s in card["privacy"]["stages"]]
    assert stages == ["conditioning_histogram", "train"] and card["paid_for"] == stages
    assert card["privacy"]["epsilon"] <= 4.0 + 1e-6  # histogram + training compose to the target
    assert card["conditioning"]["source"] == "DP histogram" and card["conditioning"]["noise_multiplier"] == 10.0
    rows = result["synthetic"]
    assert len(rows) + result["report"]["hit_limit"] == 12 and rows["rating"].between(1, 5).all()

    from synth.records.generator import RecordGenerator

    gen = RecordGenerator.from_pretrained(tmp_path / "run" / "generator")
    assert gen.conditioning.weights == card["conditioning"]["weights"]
    example = gen.examples(pd.DataFrame({"rating": [4], "title": ["nice"]}))[0]
    scored = [t for t, m in zip(example["input_ids"], example["loss_mask"], strict=True) if m]
    assert gen.tokenizer.decode(scored[:-1]) == '{"title": "nice"}'  # the rating is in the prompt, not scored
    assert "rating = 4" in gen.tokenizer.decode(example["input_ids"][: len(example["input_ids"]) - len(scored)])


def test_declared_public_weights_cost_nothing(tmp_path):
    config = _config(tmp_path, conditioning_weights={"2": 1.0})
    result = run(config, progress=False)
    card = json.loads((tmp_path / "run" / "export" / "dpsynth.json").read_text())
    assert [s["stage"] for s in card["privacy"]["stages"]] == ["train"]
    assert any("distribution of rating" in f for f in card["declared_public"])
    assert (result["synthetic"]["rating"] == 2).all()


def test_user_level_histogram_counts_one_row_per_user(tmp_path):
    """One user with 1,000 rows of rating 5 moves the histogram by one count, like any other user."""
    from synth.pipeline import conditioning_distribution
    from trainer import PrivacyLedger

    frame = pd.DataFrame({"rating": pd.array([5] * 1000 + [1] * 99, dtype="Int64"), "title": "t",
                          "user": ["heavy"] * 1000 + [f"u{i}" for i in range(99)]})
    config = build_config({
        "data": {"path": "unused.csv"}, "spec": {**SPEC, "privacy_unit": "user"}, "model": {"model": "scratch"},
        "train": {"target_epsilon": 4.0, "privacy_unit": "user", "seed": 0, "insecure_seed": True},
        "generate": {"conditioning_noise": 1e-6}, "output": {"dir": str(tmp_path / "run")}})
    ledger = PrivacyLedger(delta=1e-4, privacy_unit="user")
    dist = conditioning_distribution(config, frame, frame["user"].tolist(), ledger)
    np.testing.assert_allclose(dist.weights, [0.99, 0, 0, 0, 0.01], atol=1e-6)
    assert [e.stage for e in ledger.events] == ["conditioning_histogram"]


def test_a_user_grammar_describes_the_generated_columns_only(tmp_path):
    from synth.loading import DataError

    body = tmp_path / "body.lark"
    body.write_text('start: "{\\"title\\": " TITLE "}"\nTITLE: /"[^"\\\\\\x00-\\x1f]{1,40}"/\n')
    config = _config(tmp_path, grammar=str(body), conditioning_weights={"4": 1.0})
    result = run(config, progress=False)
    rows = result["synthetic"]
    assert len(rows) + result["report"]["hit_limit"] == 12 and (rows["rating"] == 4).all()
    assert result["card"]["generation"]["rejected_by_spec"] == 0
    # a grammar of whole records (conditioning column included) does not describe what is generated
    whole = tmp_path / "whole.lark"
    whole.write_text('start: "{\\"rating\\": " INT ", \\"title\\": " TITLE "}"\n'
                     'TITLE: /"[^"\\\\\\x00-\\x1f]{1,40}"/\n%import common.INT\n')
    config = _config(tmp_path, grammar=str(whole), conditioning_weights={"4": 1.0})
    with pytest.raises(DataError, match="conditioning columns"):
        run(dataclasses.replace(config, output=dataclasses.replace(config.output, dir=str(tmp_path / "run2"))),
            progress=False)
