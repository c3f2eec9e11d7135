"""`dpsynth init`: a draft spec from the schema only (kinds of columns), never the data's values."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from synth.drafting import draft_from_frame, render_run_config

from .specs import ADULT


def _frame() -> pd.DataFrame:
    n = 60
    return pd.DataFrame({
        "row_id": [f"r{i}" for i in range(n)],
        "customer_id": [f"c{i % 7}" for i in range(n)],
        "age": [str(20 + i % 40) for i in range(n)],
        "score": [f"{i % 5}.0" for i in range(n)],  # whole numbers written as decimals: a float column
        "colour": ["red", "green", "blue"] * (n // 3),
        "note": [f"free text number {i} about something else entirely" for i in range(n)],
        "maybe": [None if i % 4 else "yes" for i in range(n)],
    })


def test_the_draft_takes_kinds_from_the_schema_and_no_value_from_the_data():
    draft = draft_from_frame(_frame())
    kinds = {c.name: (c.type, c.nullable) for c in draft.columns}
    assert kinds == {"age": ("integer", False), "score": ("float", False), "colour": ("categorical", False),
                     "note": ("text", False), "maybe": ("categorical", True)}
    assert set(draft.left_out) == {"row_id", "customer_id"} and draft.user_column_hint == "customer_id"
    assert all(entry["estimate"] for entry in draft.spec_dict()["columns"])  # every domain is paid for or declared
    text = render_run_config(draft, data_path="d.csv", source="d.csv", epsilon=4.0, output_dir="runs/d")
    body = "\n".join(line.split("#")[0] for line in text.splitlines())  # the settings, not the comments
    for value in ("red", "green", "blue", "yes", "59", "20", "free text", "r0", "c1"):
        assert value not in body
    import tomllib

    raw = tomllib.loads(text)
    assert raw["columns"]["model"] == "lm" and [c["name"] for c in raw["spec"]["columns"]] == list(kinds)


@pytest.mark.skipif(not ADULT.exists(), reason="shared data not present")
def test_init_then_run_exports_the_census_table_with_every_domain_paid_for(tmp_path, capsys):
    """The front door: `dpsynth init DATA` then `dpsynth run DRAFT`, no spec written by hand."""
    from synth.cli.main import main

    data = tmp_path / "census.csv"
    pd.read_csv(ADULT).head(500).to_csv(data, index=False)
    draft = tmp_path / "census.toml"
    assert main(["init", str(data), "--out", str(draft)]) == 0
    assert "Next: dpsynth run" in capsys.readouterr().out
    assert main(["init", str(data), "--out", str(draft)]) == 2  # an existing draft is never replaced silently
    from synth.config_files import read_config
    from synth.planning import plan
    from synth.run_config import build_config

    planned = plan(build_config(read_config(draft), base_dir=tmp_path))
    assert [s.stage for s in planned.stages][-1] == "columns" and len(planned.stages) == 16
    assert main(["run", str(draft), "--columns.rounds", "10", "--columns.pgm_iters", "100",
                 "--generate.n", "300"]) == 0
    export = tmp_path / "runs" / "census" / "export"
    card = json.loads((export / "dpsynth.json").read_text())
    assert len(card["estimated_with_dp"]) == 15 and card["declared_public"] == []
    assert card["privacy"]["epsilon"] <= 4.0 + 1e-6
    # the plan's ε after the domain estimates is the card's (same stages, same accountant)
    from trainer.accounting import epsilon

    domains = [(s["noise_multiplier"], 1.0, 1) for s in card["privacy"]["stages"] if s["stage"].startswith("domain:")]
    assert planned.stages[14].epsilon_after == pytest.approx(
        epsilon(domains, delta=card["privacy"]["accountant_delta"], accountant="rdp"), rel=1e-6)
    assert planned.epsilon == pytest.approx(card["privacy"]["epsilon"], rel=1e-3)
    synthetic = pd.read_csv(export / "synthetic.csv")
    assert len(synthetic) == 300 and list(synthetic.columns) == list(pd.read_csv(data).columns)
    readme = (export / "README.md").read_text()
    assert "Private rows outside a domain estimated with DP" in readme
    # the first evaluation: one more command, the run config alone
    assert main(["evaluate", str(draft)]) == 0
    scores = {m["name"]: m["value"] for m in
              json.loads((tmp_path / "runs" / "census" / "evaluation" / "report.json").read_text())["metrics"]}
    assert scores["cfg_pr"] == 1.0 and 0.5 < scores["quality/sdmetrics_overall"] <= 1.0
