"""The CLI: `dpsynth train` then `dpsynth generate` from one config file, and clean errors."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from synth.cli.main import main

from .specs import WATER

pytestmark = pytest.mark.skipif(not WATER.exists(), reason="shared data not present")

CONFIG = """
[data]
path = "{data}"
invalid_rows = "clip"
[spec]
serialization = "json"
columns = [{{ name = "title", max_chars = 20 }}, {{ name = "rating", type = "integer", min = 1, max = 5 }}]
[model]
model = "scratch"
[train]
target_epsilon = 4.0
steps = 3
expected_batch_size = 32
physical_batch_size = 16
progress = false
[generate]
n = 6
seed = 1
[output]
dir = "{out}"
format = "jsonl"
"""


def test_train_then_generate(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text(CONFIG.format(data=WATER, out=tmp_path / "run"))
    assert main(["train", str(cfg), "--train.steps", "2"]) == 0
    assert re.search(r"ε spent = (3\.99\d|4\.000) ", capsys.readouterr().out)  # calibrated to within 0.01, never above
    assert main(["generate", str(cfg)]) == 0
    export = tmp_path / "run" / "export"
    rows = pd.read_json(export / "synthetic.jsonl", lines=True)
    card = json.loads((export / "dpsynth.json").read_text())
    assert len(rows) == card["rows"] == 6 and card["privacy"]["stages"][0]["steps"] == 2
    assert rows["rating"].between(1, 5).all() and rows["title"].str.len().max() <= 20
    # a second export into the same folder is refused without --overwrite, with a clean message
    assert main(["generate", str(cfg)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(["generate", str(cfg), "--overwrite"]) == 0


def test_generate_without_training_says_what_to_do(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text(CONFIG.format(data=WATER, out=tmp_path / "none"))
    assert main(["generate", str(cfg)]) == 2
    assert "run `dpsynth train` with this config first" in capsys.readouterr().err


def test_run_with_evaluation_and_audit(tmp_path, capsys):
    """`dpsynth run` scores its export when the config has [evaluation] (report in the run folder, not the
    export); `dpsynth audit` trains with canaries and never reports a bound above the claimed ε."""
    data = tmp_path / "water150.csv"
    pd.read_csv(WATER).head(150).to_csv(data, index=False)
    cfg = tmp_path / "run.toml"
    cfg.write_text(CONFIG.format(data=data, out=tmp_path / "run")
                   + '[evaluation]\nkey_nodes = [["title", "title"]]\ncategorical_nodes = ["rating"]\n')
    assert main(["run", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "cfg_pr" in out and "am/tv/category/rating" in out
    report = json.loads((tmp_path / "run" / "evaluation" / "report.json").read_text())
    metrics = {m["name"]: m for m in report["metrics"]}
    # real titles longer than the declared max_chars=20 do not parse under the derived grammar: counted, warned
    long_titles = int((pd.read_csv(data)["title"].str.len() > 20).sum())
    assert metrics["cfg_pr"]["value"] == 1.0 and report["info"]["real"]["parseable"] == 150 - long_titles > 0
    assert f"{long_titles} of 150 real records do not parse" in report["info"]["warning"]
    card = json.loads((tmp_path / "run" / "export" / "dpsynth.json").read_text())
    assert report["info"]["privacy"]["epsilon"] == card["privacy"]["epsilon"] <= 4.0
    assert sorted(p.name for p in (tmp_path / "run" / "export").iterdir()) == ["README.md", "dpsynth.json",
                                                                              "synthetic.jsonl"]
    assert main(["audit", str(cfg), "--canaries", "40", "--seed", "0", "--train.steps", "2"]) == 0
    audit = json.loads((tmp_path / "run" / "audit.json").read_text())
    assert audit["canaries"] == 40 and audit["epsilon_lower"] <= audit["claimed_epsilon"]
    assert "privacy audit: 40 canaries" in capsys.readouterr().out


def test_unknown_evaluation_key_is_refused_before_training(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text(CONFIG.format(data=WATER, out=tmp_path / "run") + '[evaluation]\nkey_node = [["title", "title"]]\n')
    assert main(["run", str(cfg)]) == 2
    assert "did you mean 'key_nodes'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_third_party_notices_are_hidden_unless_verbose():
    import subprocess
    import sys

    code = ("import sys, warnings; from synth.quiet import quiet_third_party; quiet_third_party('-v' in sys.argv); "
            "warnings.warn_explicit('library deprecation', FutureWarning, 'x.py', 1, module='transformers.modeling_utils'); "
            "warnings.warn_explicit('dpsynth says', UserWarning, 'y.py', 1, module='synth.pipeline')")
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    loud = subprocess.run([sys.executable, "-c", code, "-v"], capture_output=True, text=True, check=True).stderr
    assert "dpsynth says" in quiet and "library deprecation" not in quiet
    assert "dpsynth says" in loud and "library deprecation" in loud


def test_dpsynth_spec_explains_every_spec_and_column_key_with_its_default(capsys):
    from dataclasses import fields

    from synth.cli.main import main
    from synth.spec import ColumnSpec, DatasetSpec

    assert main(["spec"]) == 0
    out = capsys.readouterr().out
    for cls in (DatasetSpec, ColumnSpec):
        for f in fields(cls):
            line = next((x for x in out.splitlines() if x.strip().startswith(f.name + " ")), None)
            assert line is not None and "(default: " in line and f.metadata["help"] in line, f.name
