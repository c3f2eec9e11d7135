"""The records roads `evolve` and `fine-tune+evolve`: Private Evolution with the LM as its random
and variation model, in the run's one ledger, exported like any run, resumed and re-exported."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from synth.pipeline import generate, run
from synth.run_config import build_config
from trainer.accounting import epsilon
from trainer.errors import ConfigError

from .specs import WATER


def _raw(tmp_path, data, road: str) -> dict:
    return {"data": {"path": str(data), "invalid_rows": "clip"},
            "spec": {"serialization": "json", "columns": [{"name": "rating", "type": "integer", "min": 1, "max": 5},
                                                         {"name": "title", "max_chars": 12}]},
            "model": {"model": "scratch"},
            "train": {"target_epsilon": 4.0, "steps": 2, "expected_batch_size": 32, "physical_batch_size": 16,
                      "progress": False, "seed": 0, "insecure_seed": True},
            "evolve": {"road": road, "iterations": 3, "k": 2},
            "generate": {"n": 24, "batch_size": 24, "seed": 1}, "output": {"dir": str(tmp_path / road)}}


@pytest.mark.skipif(not WATER.exists(), reason="shared data not present")
@pytest.mark.parametrize("road", ["evolve", "fine-tune+evolve"])
def test_evolve_roads_export_the_final_population_paid_for_in_one_ledger(tmp_path, road):
    data = tmp_path / "water.csv"
    pd.read_csv(WATER).head(200).to_csv(data, index=False)
    raw = _raw(tmp_path, data, road)
    if road == "evolve":  # a pool of twice the population: the drawn parents stay beside a child each
        raw["evolve"]["keep_parents"] = True
    result = run(build_config(raw), progress=False)
    card = json.loads((tmp_path / road / "export" / "dpsynth.json").read_text())
    stages = [(s["stage"], s["steps"], s["noise_multiplier"]) for s in card["privacy"]["stages"]]
    assert stages[-1][:2] == ("evolve:histogram", 3)
    assert [s for s, *_ in stages] == (["train", "evolve:histogram"] if road == "fine-tune+evolve" else
                                       ["evolve:histogram"])
    history = [(s["noise_multiplier"], s["sample_rate"], s["steps"]) for s in card["privacy"]["stages"]]
    assert card["privacy"]["epsilon"] == pytest.approx(epsilon(history, delta=card["privacy"]["delta"]))
    assert card["privacy"]["epsilon"] <= 4.0 + 1e-6
    if road == "fine-tune+evolve":  # the fine-tuning alone reached the budget share of ε 4, not all of it
        train_eps = epsilon(history[:1], delta=card["privacy"]["delta"])
        assert 1.5 < train_eps <= 2.0 + 1e-6
    synthetic = result["synthetic"]
    assert len(synthetic) == 24 and synthetic["rating"].between(1, 5).all()
    assert (synthetic["title"].str.len() <= 12).all()  # written under the grammar
    readme = (tmp_path / road / "export" / "README.md").read_text()
    assert "Private Evolution" in readme and (("48 candidates" in readme) == (road == "evolve"))
    # `dpsynth generate` re-exports the same population: no new histogram, the same ledger
    again = generate(build_config({**raw, "output": {"dir": str(tmp_path / road), "overwrite": True}}),
                     progress=False)
    assert again["synthetic"].equals(synthetic) and again["epsilon"] == pytest.approx(card["privacy"]["epsilon"])
    # an interrupted run (no export yet) resumes from the saved state: nothing is released again
    import shutil

    shutil.rmtree(tmp_path / road / "export")
    resumed = run(build_config(raw), progress=False)
    assert resumed["synthetic"].equals(synthetic)
    assert json.loads((tmp_path / road / "export" / "dpsynth.json").read_text())["privacy"]["stages"] == \
        card["privacy"]["stages"]
    # resumed at another sampling temperature, the population would mix two runs' draws: refused
    shutil.rmtree(tmp_path / road / "export")
    with pytest.raises(ConfigError, match="other settings"):
        run(build_config({**raw, "generate": {**raw["generate"], "temperature": 0.5}}), progress=False)


def test_evolve_config_refuses_what_it_cannot_do(tmp_path):
    from synth.records.grammar import derive_grammar
    from synth.spec import DatasetSpec
    from trainer.errors import ConfigError

    raw = _raw(tmp_path, tmp_path / "data.csv", "evolve")
    with pytest.raises(ConfigError, match="record_variation must be fields or rewrite"):
        build_config({**raw, "evolve": {**raw["evolve"], "record_variation": "paraphrase"}})
    with pytest.raises(ConfigError, match="field_weight must be a finite number >= 0"):
        build_config({**raw, "evolve": {**raw["evolve"], "field_weight": -1.0}})
    with pytest.raises(ConfigError, match=r"fields_changed must be in \(0, 1\]"):
        build_config({**raw, "evolve": {**raw["evolve"], "fields_changed": 0.0}})
    with pytest.raises(ConfigError, match="evolve.variations must be >= 1"):
        build_config({**raw, "evolve": {**raw["evolve"], "variations": 0}})
    grammar = tmp_path / "mine.lark"
    grammar.write_text(derive_grammar(DatasetSpec.from_dict(raw["spec"])))
    with_grammar = {**raw, "spec": {**raw["spec"], "grammar": str(grammar)}}
    with pytest.raises(ConfigError, match="record_variation = \"rewrite\""):
        build_config(with_grammar)
    assert build_config({**with_grammar, "evolve": {**raw["evolve"], "record_variation": "rewrite"}}).evolve.record_variation == "rewrite"


def test_the_field_block_lets_votes_see_numbers_and_categories():
    import numpy as np

    from synth.evolution.histogram import nearest
    from synth.records.evolve_road import field_block
    from synth.spec import DatasetSpec

    spec = DatasetSpec.from_dict({"columns": [
        {"name": "rating", "type": "integer", "min": 1, "max": 5},
        {"name": "kind", "type": "categorical", "categories": ["a", "b"], "nullable": True},
        {"name": "free", "type": "float"},  # no public range: left out
        {"name": "review", "max_chars": 20}]})
    rows = [{"rating": 1, "kind": "a", "free": 0.3, "review": "x"}, {"rating": 5, "kind": "b", "free": 9.0, "review": "x"},
            {"rating": 3, "kind": None, "free": None, "review": "y"}]
    block = field_block(rows, spec, weight=2.0)
    assert block.shape == (3, 3 + 3)  # rating: arc + null; kind: a, b, missing
    np.testing.assert_allclose(np.linalg.norm(block, axis=1), 2.0)
    gram = block @ block.T  # weight² x the mean agreement of the two fields
    np.testing.assert_allclose(gram[0, 1], 0.0, atol=1e-12)  # opposite ends, other category
    np.testing.assert_allclose(gram[0, 2], 4.0 * np.cos(np.pi / 4) / 2)  # halfway on the range; category vs missing
    assert field_block(rows, spec, weight=0.0).shape == (3, 0)
    # the same text embedding for every record: with the block, a private row votes for its own rating
    text = np.tile(np.eye(4)[:1], (3, 1))
    candidates = np.concatenate([text, block], axis=1)
    private = np.concatenate([text[:1], field_block([{**rows[1], "free": 1.0}], spec, 2.0)], axis=1)
    assert nearest(private, candidates, 1)[0, 0] == 1
