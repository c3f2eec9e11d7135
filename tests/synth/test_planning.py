"""The dry run's plan is the run's spend: the same stages, σ, q, steps and ε as the card records."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from synth.planning import plan
from synth.run_config import build_config

from .specs import WATER


def _config(tmp_path, data):
    columns = [{"name": "rating", "type": "integer", "estimate": True},
               {"name": "title", "type": "categorical", "estimate": True},
               {"name": "cleaned_review", "nullable": True, "max_chars": 40}]
    return build_config({
        "data": {"path": str(data), "invalid_rows": "clip"},
        "spec": {"serialization": "json", "columns": columns, "estimate_noise": 3.0},
        "model": {"model": "scratch"},
        "train": {"target_epsilon": 4.0, "steps": 2, "expected_batch_size": 32, "physical_batch_size": 16,
                  "progress": False, "seed": 0, "insecure_seed": True},
        "generate": {"n": 8, "batch_size": 8, "seed": 1}, "output": {"dir": str(tmp_path / "run")}})


@pytest.mark.skipif(not WATER.exists(), reason="shared data not present")
def test_the_plan_matches_what_the_run_then_spends_and_trains_nothing(tmp_path, capsys):
    from synth.cli.main import main
    from synth.pipeline import run

    data = tmp_path / "water.csv"
    pd.read_csv(WATER).head(400).to_csv(data, index=False)
    config = _config(tmp_path, data)
    planned = plan(config, probe=True)
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written
    assert planned.n_units == 400 and planned.delta == pytest.approx(1 / 400 ** 1.1)
    assert planned.seconds_per_step > 0 and planned.estimated_seconds == pytest.approx(2 * planned.seconds_per_step)
    assert "cleaned_review: text of at most 40 characters or missing" in planned.constraints
    assert "clipped" in planned.domain_check  # long reviews, declared max_chars = 40: the run clips them too
    run(config, progress=False)
    card = json.loads((tmp_path / "run" / "export" / "dpsynth.json").read_text())
    spent = card["privacy"]["stages"]
    assert [s.stage for s in planned.stages] == [s["stage"] for s in spent] == ["domain:rating", "domain:title", "train"]
    for p, s in zip(planned.stages, spent, strict=True):
        assert (p.noise_multiplier, p.sample_rate, p.steps) == pytest.approx(
            (s["noise_multiplier"], s["sample_rate"], s["steps"]))
    assert planned.epsilon == pytest.approx(card["privacy"]["epsilon"], rel=1e-6)
    # the command prints the same plan
    assert main(["run", str(tmp_path / "absent.toml"), "--dry-run"]) == 2
    (tmp_path / "c.yaml").write_text(json.dumps({"data": {"path": str(data), "invalid_rows": "clip"},
                                                 "spec": config_spec(), "model": {"model": "scratch"},
                                                 "train": {"target_epsilon": 4.0, "steps": 2,
                                                           "expected_batch_size": 32}}))
    assert main(["run", str(tmp_path / "c.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "Plan (dry run, nothing trained): N = 400 examples" in out and "Total: ε = " in out


def config_spec() -> dict:
    return {"serialization": "json", "columns": [{"name": "rating", "type": "integer", "min": 1, "max": 5},
                                                  {"name": "title", "max_chars": 30}]}


@pytest.mark.skipif(not WATER.exists(), reason="shared data not present")
def test_a_declared_domain_the_data_breaks_stops_the_plan_as_it_would_stop_the_run(tmp_path):
    from evaluation.tables import DataError

    data = tmp_path / "water.csv"
    pd.read_csv(WATER).head(50).to_csv(data, index=False)
    config = build_config({"data": {"path": str(data)}, "spec": config_spec() | {"columns": [
        {"name": "rating", "type": "integer", "min": 1, "max": 3}]}, "model": {"model": "scratch"}})
    with pytest.raises(DataError, match="column 'rating'"):
        plan(config)
