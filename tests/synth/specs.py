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
