"""The CLI: `dpsynth train` then `dpsynth generate` from one config file, and clean errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from synth.cli.main import main

from .specs import WATER

pytestmark = pytest.mark.skipif(not WATER.exists(), reason="shared data not present")

CONFIG = """
[data]
path = "{data}"
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
    assert "ε spent = 4.000" in capsys.readouterr().out
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
