"""The dataset spec: which columns to synthesise, their types, and what is public.

Everything here is *declared* by the user (public knowledge).  Nothing in the
spec is ever filled in silently from the private data: a categorical column
without a declared category list, or a number without a declared range, is
generated unconstrained, unless the column asks for ``estimate = true``: then the
domain is measured with DP and paid from the budget (synth/domains.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from trainer.config import check_field_types
from trainer.errors import ConfigError, nearest_key_hint

ColumnType = Literal["text", "categorical", "integer", "float"]
COLUMN_TYPES = ("text", "categorical", "integer", "float")


@dataclass
class ColumnSpec:
    name: str = field(metadata={"help": "Column name in the private data."})
    type: str = field(default="text", metadata={"help": "text, categorical, integer or float."})
    categories: list[str] | None = field(default=None, metadata={"help": "Public list of allowed values (categorical)."})
    min: float | None = field(default=None, metadata={"help": "Public lower bound (integer/float)."})
    max: float | None = field(default=None, metadata={"help": "Public upper bound (integer/float)."})
    max_chars: int = field(default=200, metadata={"help": "Longest value generated for text (bounds every record)."})
    nullable: bool = field(default=False, metadata={"help": "The value may be missing (null)."})
    bins: int | None = field(default=None, metadata={"help": "Column model only: equal-width bins of this number's range (default: one per value for integer ranges of at most 100 values, else 32)."})
    decimals: int | None = field(default=None, metadata={"help": "Column model only: decimal places of generated float values (drawn uniformly in their bin, then rounded)."})
    estimate: bool = field(default=False, metadata={"help": "Measure this column's undeclared domain with DP, paid from the budget: the category list (categorical; rows or documents holding a value below the release threshold keep it as '(other)'), [min, max] (integer/float) or max_chars (text)."})

    def __post_init__(self):
        check_field_types(self, f"column {self.name!r}")
        if self.categories is not None and not all(isinstance(c, str) for c in self.categories):
            raise ConfigError(f"column {self.name!r}: categories must be strings (quote them), got {self.categories!r}")
        for bound in (self.min, self.max):
            if bound is not None and not math.isfinite(bound):
                raise ConfigError(f"column {self.name!r}: min and max must be finite numbers, got {bound}")
        if self.type not in COLUMN_TYPES:
            raise ConfigError(f"column {self.name!r}: type must be one of {', '.join(COLUMN_TYPES)}, got {self.type!r}")
        if self.categories is not None and self.type != "categorical":
            raise ConfigError(f"column {self.name!r}: categories are only for categorical columns")
        if (self.min is not None or self.max is not None) and self.type not in ("integer", "float"):
            raise ConfigError(f"column {self.name!r}: min/max are only for integer and float columns")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ConfigError(f"column {self.name!r}: min {self.min} > max {self.max}")
        if (self.type == "integer" and self.min is not None and self.max is not None
                and math.ceil(self.min) > math.floor(self.max)):
            raise ConfigError(f"column {self.name!r}: no integer lies in [{self.min}, {self.max}]")
        if (self.bins is not None or self.decimals is not None) and self.type not in ("integer", "float"):
            raise ConfigError(f"column {self.name!r}: bins and decimals are only for integer and float columns")
        if self.bins is not None and self.bins < 1:
            raise ConfigError(f"column {self.name!r}: bins must be >= 1, got {self.bins}")
        if self.decimals is not None and (self.type != "float" or self.decimals < 0):
            raise ConfigError(f"column {self.name!r}: decimals (>= 0) is only for float columns")
        if self.max_chars < 1:
            raise ConfigError(f"column {self.name!r}: max_chars must be >= 1")
        if self.estimate and (self.categories is not None or self.min is not None or self.max is not None):
            raise ConfigError(f"column {self.name!r}: estimate = true measures an undeclared domain with DP; "
                              "drop the declared categories/min/max, or drop estimate")

    def public_facts(self) -> list[str]:
        facts = []
        if self.categories is not None:
            facts.append(f"{self.name}: category list ({len(self.categories)} values)")
        if self.min is not None or self.max is not None:
            facts.append(f"{self.name}: range [{_bound(self.min)}, {_bound(self.max)}]")
        if self.type == "text" and not self.estimate:
            facts.append(f"{self.name}: at most {self.max_chars} characters")
        return facts


@dataclass
class DatasetSpec:
    columns: list[ColumnSpec] = field(metadata={"help": "Columns to synthesise, in record order."})
    privacy_unit: str = field(default="example", metadata={"help": "example, or the name of a user column."})
    conditioning: list[str] = field(default_factory=list, metadata={"help": "Columns the generator is conditioned on (each with a declared domain)."})
    conditioning_weights: dict[str, float] | None = field(default=None, metadata={"help": "Declared public distribution of the one conditioning column (value -> weight); without it a DP histogram is paid for."})
    grammar: str | None = field(default=None, metadata={"help": "A lark grammar file for the serialised record."})
    serialization: str = field(default="json", metadata={"help": "json (object in column order) or dict (Python dict literal, Struct-Bench)."})
    description: str = field(default="", metadata={"help": "Public one-line description of a record, used in the generator's prompt (never read from the data)."})
    estimate_noise: float = field(default=10.0, metadata={"help": "σ of each DP domain estimate (columns with estimate = true), in rows; larger costs less ε but keeps only values held by more rows."})

    def __post_init__(self):
        if not isinstance(self.columns, list) or not all(isinstance(c, (dict, ColumnSpec)) for c in self.columns):
            raise ConfigError("spec.columns must be a list of tables, e.g. [{ name = \"title\" }]")
        self.columns = [c if isinstance(c, ColumnSpec) else ColumnSpec(**_checked(c, ColumnSpec, "column")) for c in self.columns]
        check_field_types(self, "spec")
        if not self.columns:
            raise ConfigError("the spec names no columns")
        names = [c.name for c in self.columns]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ConfigError(f"columns named twice in the spec: {sorted(dupes)}")
        for c in self.conditioning:
            if c not in names:
                raise ConfigError(f"conditioning column {c!r} is not among the spec's columns {names}")
            col = self.column(c)
            if not ((col.type == "categorical" and col.categories)
                    or (col.type in ("integer", "float") and col.min is not None and col.max is not None)):
                raise ConfigError(
                    f"conditioning column {c!r} needs a public domain: a categorical column with declared "
                    "categories, or a numeric column with declared min and max")
        if self.conditioning_weights is not None:
            if len(self.conditioning) != 1:
                raise ConfigError("conditioning_weights declares the distribution of exactly one conditioning column")
            if any(w < 0 for w in self.conditioning_weights.values()) or not sum(self.conditioning_weights.values()) > 0:
                raise ConfigError("conditioning_weights must be non-negative with a positive sum")
        if self.conditioning and len(self.conditioning) == len(names):
            raise ConfigError("every column is a conditioning column: leave at least one to generate")
        if any(c.estimate for c in self.columns) and self.grammar:
            raise ConfigError("estimate = true is for the derived grammar; with a user grammar the grammar fixes "
                              "every domain and a DP estimate would spend budget for nothing")
        if any(c.estimate for c in self.columns) and not self.estimate_noise > 0:
            raise ConfigError(f"estimate_noise must be > 0, got {self.estimate_noise}")
        for c in self.columns:
            if c.type == "categorical" and c.categories is None and not c.estimate and not self.grammar:
                raise ConfigError(
                    f"column {c.name!r} is categorical but declares no categories: declare them (categories = "
                    "[...]), or set estimate = true to measure the list with DP, or make it a text column")
        if self.serialization not in ("json", "dict"):
            raise ConfigError(f"serialization must be json or dict, got {self.serialization!r}")
        if self.privacy_unit != "example" and self.privacy_unit in names:
            raise ConfigError(f"the user column {self.privacy_unit!r} must not also be synthesised")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def body(self) -> "DatasetSpec":
        """The generated part of a record: every column but the conditioning ones (which sit in the
        prompt).  A user grammar describes records of this spec."""
        if not self.conditioning:
            return self
        return DatasetSpec(columns=[c for c in self.columns if c.name not in self.conditioning],
                           serialization=self.serialization, grammar=self.grammar)

    def column(self, name: str) -> ColumnSpec:
        return next(c for c in self.columns if c.name == name)

    def public_facts(self) -> list[str]:
        facts = [f for c in self.columns for f in c.public_facts()]
        if self.description:
            facts.append(f"prompt description: {self.description!r}")
        if self.conditioning_weights is not None:
            facts.append(f"distribution of {self.conditioning[0]}: {self.conditioning_weights}")
        return facts

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DatasetSpec":
        return cls(**_checked(d, cls, "spec"))

    @classmethod
    def from_file(cls, path: str | Path) -> "DatasetSpec":
        from .config_files import read_config

        raw = read_config(path)
        grammar = raw.get("grammar")
        if isinstance(grammar, str) and not Path(grammar).expanduser().is_absolute():
            raw["grammar"] = str(Path(path).parent / grammar)  # a spec file's paths are relative to it
        return cls.from_dict(raw)


def _bound(v: float | None) -> str:
    """1.0 -> "1" (bounds are stored as floats), 2.5 -> "2.5", None -> "None"."""
    return str(int(v)) if v is not None and float(v).is_integer() else str(v)


def _checked(d: dict, cls, what: str) -> dict:
    """Refuse unknown keys, suggesting the nearest valid one."""
    valid = [f.name for f in fields(cls)]
    for key in d:
        if key not in valid:
            raise ConfigError(f"unknown {what} key {key!r}{nearest_key_hint(key, valid)}")
    return dict(d)
