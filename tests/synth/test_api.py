"""The Python front door (synth.fit / load): the README's notebook example runs, the DataFrame is
never written, errors name the DataFrame's row and column, and `import synth` stays light."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from trainer.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
CENSUS = REPO / "synth" / "data" / "census_demo.csv"
FAST = {"rounds": 8, "pgm_iters": 80, "max_model_size": 2.0}


def _readme_example() -> str:
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- notebook-example[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert block, "README.md lost its notebook example"
    return block.group(1)


def test_the_readme_notebook_example_runs(tmp_path, monkeypatch, capsys):
    code = _readme_example().replace('"synth/data/', f'"{REPO}/synth/data/')
    # the example as written, made quick: the column model's search bounded (same pipeline, same ledger)
    code = code.replace("gen = fit(df, epsilon=4,", f"gen = fit(df, epsilon=4, columns={FAST!r},")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md notebook example", "exec"), scope)
    synthetic, gen, again = scope["synthetic"], scope["gen"], scope["again"]
    df = scope["df"]
    assert list(synthetic.columns) == list(df.columns) and len(synthetic) == 1000 and len(again) == 5
    assert gen.epsilon <= 4 + 1e-6 and gen.card["privacy"]["accountant"] == "rdp"
    assert gen.card["declared_public"][0].startswith("schema: column names and types")
    assert len(gen.card["estimated_with_dp"]) == 15  # every domain paid for, none read for free
    assert "Synthesizer(15 columns" in capsys.readouterr().out
    card = json.loads((tmp_path / "runs" / "notebook" / "export" / "dpsynth.json").read_text())
    assert card["rows"] == 1000 and card["privacy"]["epsilon"] == pytest.approx(gen.epsilon)
    loaded = json.loads((tmp_path / "runs" / "notebook" / "saved" / "card.json").read_text())
    assert loaded["card"]["privacy"]["epsilon"] == pytest.approx(gen.epsilon)
    # read back from disk there are no private rows to compare with, and the report says so
    reloaded = scope["load"]("runs/notebook/saved")
    reloaded.sample(3, seed=0)
    assert reloaded.last_private_report["exact_copies_of_training_rows"] is None
    assert gen.last_private_report["sampled"] == 1000
    # a second fit on the same folder resumes: the saved releases are re-used, nothing is paid twice
    again = scope["fit"](df, epsilon=4, columns=FAST, output_dir="runs/notebook", progress=False)
    assert again.card["privacy"]["stages"] == gen.card["privacy"]["stages"]


def test_the_dataframe_is_never_written_and_a_declared_spec_is_used_as_given(tmp_path):
    from synth import fit

    df = pd.read_csv(CENSUS).head(300)
    spec = {"columns": [{"name": "age", "type": "integer", "min": 17, "max": 90},
                        {"name": "sex", "type": "categorical", "categories": ["Female", "Male"]},
                        {"name": "income", "type": "categorical", "categories": ["<=50K", ">50K"]}]}
    gen = fit(df, spec, epsilon=2, columns=FAST, output_dir=tmp_path / "run", progress=False)
    assert gen.card["estimated_with_dp"] == [] and not any(f.startswith("schema") for f in gen.card["declared_public"])
    assert [s["stage"] for s in gen.card["privacy"]["stages"]][:1] == ["columns:measure"]
    sample = gen.sample(200, seed=3)
    assert sample["age"].between(17, 90).all() and set(sample["sex"]) <= {"Female", "Male"}
    # exact copies of training rows, counted independently: a row copies when all three fields match one
    train_rows = set(df[["age", "sex", "income"]].itertuples(index=False, name=None))
    copies = sum(row in train_rows for row in sample[["age", "sex", "income"]].itertuples(index=False, name=None))
    assert copies > 0  # 200 draws over a 74 x 2 x 2 domain that 300 training rows cover densely
    assert gen.last_private_report["exact_copies_of_training_rows"] == copies
    assert gen.last_private_report["sampled"] == 200
    for path in (tmp_path / "run").rglob("*"):
        assert path.suffix not in (".csv", ".jsonl", ".parquet"), path  # no copy of the private rows
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert report["columns_not_synthesised"] == [c for c in df.columns if c not in ("age", "sex", "income")]
    plan = fit(df, spec, epsilon=2, columns=FAST, output_dir=tmp_path / "dry", dry_run=True)
    assert plan.stages[-1].stage == "columns" and plan.epsilon == pytest.approx(2.0, rel=1e-3)
    assert not (tmp_path / "dry").exists()


def test_bad_input_is_a_message_naming_the_dataframe_row_and_column(tmp_path):
    from synth import fit

    df = pd.DataFrame({"age": ["31", "40", "forty"], "sex": ["Male", "Female", "Male"]})
    spec = {"columns": [{"name": "age", "type": "integer", "min": 0, "max": 120},
                        {"name": "sex", "type": "categorical", "categories": ["Female", "Male"]}]}
    from evaluation.tables import DataError

    with pytest.raises(DataError, match=r"DataFrame \(in memory\), row 3, column 'age': 'forty' is not a number"):
        fit(df, spec, output_dir=tmp_path / "r", progress=False)
    with pytest.raises(ConfigError, match="no argument 'trian'.*did you mean 'train'"):
        fit(df, spec, trian={"steps": 2})
    with pytest.raises(ConfigError, match="no rows"):
        fit(df.head(0), spec)
    with pytest.raises(TypeError, match="DataFrame or a data file"):
        fit([1, 2, 3], spec)


def test_import_synth_stays_light():
    code = "import sys, synth; from synth import fit, load; print('torch' in sys.modules, 'pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_a_hugging_face_datasets_export_carries_the_card_as_its_dataset_card(tmp_path):
    import yaml
    from datasets import load_from_disk

    from evaluation.tables import load_table
    from synth import fit

    df = pd.read_csv(CENSUS).head(200)
    spec = {"columns": [{"name": "sex", "type": "categorical", "categories": ["Female", "Male"]},
                        {"name": "income", "type": "categorical", "categories": ["<=50K", ">50K"]}]}
    gen = fit(df, spec, epsilon=1, columns=FAST, output_dir=tmp_path / "run", progress=False)
    out = gen.export(tmp_path / "export", n=50, fmt="hf", seed=0)
    dataset = load_from_disk(str(out / "dataset"))
    assert dataset.num_rows == 50 and dataset.column_names == ["sex", "income"]
    readme = (out / "README.md").read_text()
    header = yaml.safe_load(readme.split("---\n")[1])
    assert header["dp"]["epsilon"] == pytest.approx(gen.epsilon) and header["dp"]["privacy_unit"] == "example"
    assert "push_to_hub('YOUR_NAME/YOUR_DATASET')" in readme  # shown, never run
    assert len(load_table(out / "dataset")) == 50  # `dpsynth evaluate` reads the folder as a table
