"""TextSpec: which column holds the documents, their public labels, the privacy unit, chunking.

Labels are declared like record columns (a categorical list, an integer range, or
``estimate = true`` for a DP estimate of the list); generation is conditioned on them, and
their distribution at generation is declared public (``label_weights``) or a DP histogram
paid from the budget.  The records road's machinery for both is reused through
``as_dataset_spec()``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.config import check_field_types
from trainer.errors import ConfigError

from ..spec import ColumnSpec, DatasetSpec, _checked

# a document's text is not bounded by max_chars: it is chunked; this only satisfies ColumnSpec
_UNBOUNDED = 1 << 40


@dataclass
class TextSpec:
    text: str = field(default="text", metadata={"help": "Column holding the documents (a table), ignored for a folder of .txt / .md files."})
    labels: list[ColumnSpec] = field(default_factory=list, metadata={"help": "Label columns the generator is conditioned on, each with a declared domain or estimate = true."})
    label_weights: dict[str, float] | None = field(default=None, metadata={"help": "Declared public distribution of the one label (value -> weight); without it a DP histogram is paid for."})
    privacy_unit: str = field(default="document", metadata={"help": "document (default: all of a document's chunks are one unit), or the name of a user column."})
    description: str = field(default="", metadata={"help": "Public one-line description of a document, used in the prompt (never read from the data)."})
    context: str | None = field(default=None, metadata={"help": "A column of free text each document is written given (in its prompt, no loss; e.g. an album's summary for its captions). Private like the document; at generation the caller gives one per document."})
    context_label: str = field(default="context", metadata={"help": "What the prompt calls the context (e.g. 'album summary')."})
    chunk_tokens: int = field(default=256, metadata={"help": "Tokens per training row (prompt included): longer documents become several chunks of one unit."})
    overlap_tokens: int = field(default=32, metadata={"help": "Tokens of the previous chunk a continuation chunk sees as context (no loss on them)."})
    max_chunks_per_unit: int = field(default=4, metadata={"help": "k: chunks a sampled unit contributes to one step at most (chosen at random each step); a micro-batch must hold k rows."})
    estimate_noise: float = field(default=10.0, metadata={"help": "σ of DP label-list estimates (labels with estimate = true)."})

    def __post_init__(self):
        if not isinstance(self.labels, list) or not all(isinstance(c, (dict, ColumnSpec)) for c in self.labels):
            raise ConfigError("text.labels must be a list of tables, e.g. [{ name = \"rating\", type = \"categorical\", "
                              "categories = [...] }]")
        self.labels = [c if isinstance(c, ColumnSpec) else ColumnSpec(**_checked(c, ColumnSpec, "label"))
                       for c in self.labels]
        check_field_types(self, "text")
        if self.chunk_tokens < 16:
            raise ConfigError(f"text.chunk_tokens must be >= 16, got {self.chunk_tokens}")
        if not 0 <= self.overlap_tokens < self.chunk_tokens // 2:
            raise ConfigError(f"text.overlap_tokens must be in [0, chunk_tokens / 2), got {self.overlap_tokens}")
        if self.max_chunks_per_unit < 1:
            raise ConfigError(f"text.max_chunks_per_unit must be >= 1, got {self.max_chunks_per_unit}")
        if self.text in {c.name for c in self.labels}:
            raise ConfigError(f"the text column {self.text!r} cannot also be a label")
        if self.context is not None and self.context in {self.text, *self.label_names}:
            raise ConfigError(f"the context column {self.context!r} cannot also be the text or a label")
        for c in self.labels:
            if c.estimate and c.type != "categorical":
                raise ConfigError(f"label {c.name!r}: estimate = true measures a categorical label's list; declare "
                                  "an integer label's min and max")
        if self.label_weights is not None and self.estimated_labels:
            raise ConfigError("label_weights declare a distribution over a declared list; an estimated list has "
                              "none yet: drop label_weights (a DP histogram is used) or declare the categories")
        self.domain_spec()
        if not self.estimated_labels:
            self.as_dataset_spec()  # label domains, weights: checked as conditioning columns are

    @property
    def label_names(self) -> list[str]:
        return [c.name for c in self.labels]

    @property
    def user_column(self) -> str | None:
        return None if self.privacy_unit == "document" else self.privacy_unit

    @property
    def estimated_labels(self) -> list[str]:
        """Labels whose category list is measured with DP before training (estimate = true)."""
        return [c.name for c in self.labels if c.estimate]

    def domain_spec(self) -> DatasetSpec:
        """The labels and the text as a records spec without conditioning: typing the corpus and the DP
        estimates of undeclared label lists (the records road's, unchanged)."""
        text = ColumnSpec(name=self.text, type="text", max_chars=_UNBOUNDED)
        context = [ColumnSpec(name=self.context, type="text", max_chars=_UNBOUNDED)] if self.context else []
        return DatasetSpec(columns=[*self.labels, *context, text], description=self.description,
                           estimate_noise=self.estimate_noise, privacy_unit=self.user_column or "example")

    def as_dataset_spec(self) -> DatasetSpec:
        """The same with the labels as conditioning columns (every label list declared or already
        estimated): domain checks and the conditioning distribution of the records road apply."""
        return dataclasses.replace(self.domain_spec(), conditioning=self.label_names,
                                   conditioning_weights=self.label_weights)

    def with_labels(self, labels: list[ColumnSpec]) -> "TextSpec":
        """This spec with the given label columns (e.g. once their lists were estimated)."""
        return dataclasses.replace(self, labels=list(labels))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TextSpec":
        return cls(**_checked(d, cls, "text"))

    @classmethod
    def from_file(cls, path: str | Path) -> "TextSpec":
        from ..config_files import read_config

        return cls.from_dict(read_config(path))
