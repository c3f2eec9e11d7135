"""Specs for the shared data sets (public facts a user would declare)."""

from __future__ import annotations

from pathlib import Path

from synth.spec import DatasetSpec

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
WATER = SHARED / "water_dev.csv"
ADULT = SHARED / "adult.csv"


def water_spec(serialization: str = "dict") -> DatasetSpec:
    return DatasetSpec.from_dict({
        "serialization": serialization,
        "columns": [
            {"name": "product_name", "max_chars": 200},
            {"name": "overall_rating", "type": "float", "min": 1, "max": 5},
            {"name": "rating", "type": "integer", "min": 1, "max": 5},
            {"name": "title", "max_chars": 100},
            {"name": "cleaned_review", "nullable": True, "max_chars": 400},
        ],
    })


def adult_spec(serialization: str = "json") -> DatasetSpec:
    cat = ["workclass", "education", "marital-status", "occupation", "relationship", "race", "sex",
           "native-country", "income"]
    num = ["age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
    header = ADULT.read_text().splitlines()[0].split(",")
    columns = [{"name": c, "type": "integer"} if c in num else {"name": c, "type": "categorical", "estimate": True}
               for c in header]
    assert {c["name"] for c in columns} == set(cat) | set(num)
    return DatasetSpec.from_dict({"serialization": serialization, "columns": columns})


def water_column_road_config(tmp_path: Path, columns: dict) -> dict:
    """A small Water run on the column road: 300 rows, overall_rating and rating to the column model
    (``columns``: the run config's [columns]), a short title from a scratch LM in 3 DP steps."""
    import pandas as pd

    data = tmp_path / "water.csv"
    pd.read_csv(WATER).head(300).to_csv(data, index=False)
    spec = {"serialization": "json", "columns": [
        {"name": "overall_rating", "type": "float", "min": 1, "max": 5, "bins": 8, "decimals": 1},
        {"name": "rating", "type": "integer", "min": 1, "max": 5}, {"name": "title", "max_chars": 20}]}
    return {"data": {"path": str(data), "invalid_rows": "clip"}, "spec": spec, "model": {"model": "scratch"},
            "train": {"target_epsilon": 4.0, "steps": 3, "expected_batch_size": 32, "physical_batch_size": 16,
                      "progress": False, "seed": 0, "insecure_seed": True},
            "columns": columns, "generate": {"n": 12, "seed": 1}, "output": {"dir": str(tmp_path / "run")}}
