"""What to evaluate: how rows become record texts, which nodes and attributes to compare.

An ``EvalSpec`` is usually the ``[evaluation]`` table of a config file.  Records come
either from table columns (serialised here, in the given order, as a Python dict
literal like Struct-Bench or as a JSON object) or from one column that already holds
the record text.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from trainer.errors import ConfigError, nearest_key_hint


@dataclass
class EvalSpec:
    columns: list[str] = field(default_factory=list, metadata={"help": "Columns that make a record, in serialisation order."})
    text_column: str | None = field(default=None, metadata={"help": "Or: the column that already holds each record's text."})
    serialization: str = field(default="dict", metadata={"help": "dict (Python dict literal, Struct-Bench) or json."})
    missing: str | None = field(default=None, metadata={"help": "How a missing value is written (default None for dict, null for json; Struct-Bench Water: nan)."})
    numeric_columns: list[str] | None = field(default=None, metadata={"help": "Columns written as numbers (default: those whose every real value is a number)."})
    grammar: str | None = field(default=None, metadata={"help": "Lark grammar of a record (start rule: start)."})
    key_nodes: list[list[str]] = field(default_factory=list, metadata={"help": "Pairs of node types for KND, e.g. [[\"title\", \"cleaned_review\"]]."})
    numeric_nodes: list[str] = field(default_factory=list, metadata={"help": "Nodes whose text is a number (AM: 1-Wasserstein)."})
    categorical_nodes: list[str] = field(default_factory=list, metadata={"help": "Nodes whose text is a category (AM: total variation)."})
    length_nodes: list[str] | None = field(default=None, metadata={"help": "Nodes whose length in words is compared (default: the key nodes)."})
    count_nodes: list[str] = field(default_factory=list, metadata={"help": "Nodes whose number per record is compared."})
    table_columns: list[str] = field(default_factory=list, metadata={"help": "Categorical and numeric columns scored with SDMetrics' QualityReport (column shapes, column pair trends; numeric columns as numerical). `dpsynth run` fills in the spec's non-text columns."})
    label: str | None = field(default=None, metadata={"help": "Column to predict for downstream utility (TSTR)."})
    test_fraction: float = field(default=0.3, metadata={"help": "Share of the real data held out to test the TSTR classifiers."})
    k: int = field(default=3, metadata={"help": "Neighbours for KNN precision / recall."})
    max_knd_pairs: int = field(default=10, metadata={"help": "Most node pairs per record for repeated nodes."})
    seed: int = field(default=0, metadata={"help": "Seed for the held-out split and the classifiers."})
    encoder: str | None = field(default=None, metadata={"help": "Sentence-transformers model folder (default: all-MiniLM-L6-v2, offline)."})

    def __post_init__(self):
        if bool(self.columns) == bool(self.text_column):
            raise ConfigError("evaluation: give either columns (to serialise) or text_column (records already as text)")
        unknown = [c for c in self.table_columns if c not in self.columns]
        if unknown:
            raise ConfigError(f"evaluation.table_columns: {unknown} are not among the record's columns {self.columns}")
        if self.serialization not in ("dict", "json"):
            raise ConfigError(f"evaluation.serialization must be dict or json, got {self.serialization!r}")
        if self.missing is None:
            self.missing = "None" if self.serialization == "dict" else "null"
        self.key_nodes = [list(p) for p in self.key_nodes]
        for pair in self.key_nodes:
            if len(pair) != 2:
                raise ConfigError(f"evaluation.key_nodes: each entry is a pair of node names, got {pair}")
        if self.length_nodes is None:
            self.length_nodes = list(dict.fromkeys(n for pair in self.key_nodes for n in pair))
        if not 0 < self.test_fraction < 1:
            raise ConfigError("evaluation.test_fraction must be between 0 and 1")
        if self.k < 1:
            raise ConfigError("evaluation.k must be >= 1")

    @property
    def node_names(self) -> set[str]:
        return {*(n for p in self.key_nodes for n in p), *self.numeric_nodes, *self.categorical_nodes,
                *self.length_nodes, *self.count_nodes}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EvalSpec":
        """From a config mapping: its ``evaluation`` table if it has one, else the mapping itself.

        A dpsynth run config's ``[spec]`` supplies ``columns`` and ``serialization``
        when the evaluation table does not give them.
        """
        values = dict(d.get("evaluation", {} if isinstance(d.get("spec"), dict) else d))  # a run config: its [spec]
        run_spec = d.get("spec")
        if isinstance(run_spec, dict) and "columns" in run_spec and not values.get("text_column"):
            values.setdefault("columns", [c["name"] if isinstance(c, dict) else c for c in run_spec["columns"]])
            values.setdefault("serialization", run_spec.get("serialization", "json"))
            if "grammar" in run_spec:
                values.setdefault("grammar", run_spec["grammar"])
            values.setdefault("table_columns", [c["name"] for c in run_spec["columns"]
                                                if isinstance(c, dict) and c.get("type", "text") != "text"])
        valid = [f.name for f in fields(cls)]
        for key in values:
            if key not in valid:
                raise ConfigError(f"unknown evaluation key {key!r}{nearest_key_hint(key, valid)}")
        return cls(**values)
