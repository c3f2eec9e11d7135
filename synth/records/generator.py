"""RecordGenerator: DP-train a causal LM on serialised records, then sample records under the grammar.

The model roads (SmolLM2 offline, a user's model, from scratch), tokenizers and the
decoding loop are the shared LM layer's (``synth.lm``).  The training text of a record is ``prompt + record + EOS`` where only the record
and EOS carry loss.  Sampling starts from the same prompt and is constrained by
the grammar at every token.  With conditioning columns, their values are part of
the prompt (no loss) and the record holds the other columns; at generation the
values are drawn from ``self.conditioning`` (declared public or a DP histogram).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainer import PrivacyLedger, TrainConfig, train_model
from trainer.io import atomic_directory

from ..conditioning import ConditioningDistribution, plain_value
from ..lm import ModelChoice, SampleStats, build_model, sample_texts
from ..lm.continuous import MAX_CACHE_GB, sample_from_prompts
from ..lm.decoding_model import decoding_model
from ..lm.saved import read_generator, write_generator
from ..spec import DatasetSpec
from .field_temperature import FieldTemperatures
from .grammar import derive_grammar
from .serialize import RecordParseError, parse, serialize, serialize_value, texts_to_frame

PROMPT = "Record:\n"


KIND = "dpsynth.RecordGenerator"


class RecordGenerator:
    """fit(frame) with DP, then sample(n) well-formed records."""

    def __init__(self, spec: DatasetSpec, choice: ModelChoice | None = None, *, grammar: str | None = None,
                 _built=None):
        self.spec = spec
        self.choice = choice or ModelChoice()
        self.body_spec = spec.body()  # the generated part of a record: every column but the conditioning ones
        self.grammar = grammar or derive_grammar(self.body_spec)
        self.conditioning: ConditioningDistribution | None = None
        self.model, self.tokenizer, self.model_description = _built or build_model(self.choice)
        self.ledger: PrivacyLedger | None = None
        self.train_config: TrainConfig | None = None
        self.evolved: pd.DataFrame | None = None  # Private Evolution's final population (evolve roads)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "RecordGenerator":
        """Reload what ``save_pretrained`` wrote: spec, grammar, trained weights and the ledger."""
        meta, choice, built, ledger, conditioning = read_generator(directory, KIND)
        gen = cls(DatasetSpec.from_dict(meta["spec"]), choice, grammar=(Path(directory) / "grammar.lark").read_text(),
                  _built=built)
        gen.ledger, gen.conditioning = ledger, conditioning
        return gen

    # ------------------------------------------------------------------ fit
    def examples(self, frame: pd.DataFrame, *, max_tokens: int | None = None) -> list[dict[str, Any]]:
        from ..loading import DataError

        out, bound = [], self.max_record_tokens()
        for i, record in enumerate(frame.to_dict("records")):
            prompt = self._prompt_ids(tuple(record[c] for c in self.spec.conditioning))
            body = self.tokenizer.encode(serialize(record, self.body_spec)) + [self.tokenizer.eos_token_id]
            if len(body) > bound:  # the domain check keeps rows inside the spec; this bounds each row's cost
                raise DataError(f"private row {i + 1} is {len(body)} tokens long, more than the {bound} a record of "
                                "this spec can take: it is outside the spec's domain (check max_chars)")
            ids = prompt + body
            out.append({"input_ids": ids, "loss_mask": [0] * len(prompt) + [1] * len(body)})
        return out

    def _prompt_ids(self, condition: tuple = ()) -> list[int]:
        """The public prompt every record follows: the spec's description (and the record's
        conditioning values), in the model's chat template when it has one (an instruct model
        then answers with the record)."""
        kind = "a JSON object" if self.spec.serialization == "json" else "a Python dict"
        given = "".join(f"{c} = {plain_value(v)!r}; " for c, v in zip(self.spec.conditioning, condition, strict=True))
        task = (f"{self.spec.description}\n" if self.spec.description else "") + (
            f"Given {given.rstrip('; ')}, w" if given else "W") + (
            f"rite one record as {kind} with the keys {', '.join(self.body_spec.names)}.")
        return self.tokenizer.instruction_ids("You write data records.", task, plain_suffix="\n" + PROMPT)

    def fit(self, frame: pd.DataFrame, config: TrainConfig, *, units=None, output_dir: str | Path | None = None,
            ledger: PrivacyLedger | None = None):
        """DP-train on the private ``frame``; checkpoints (and resume) in ``output_dir``."""
        result = train_model(self.model, self.examples(frame), config, units=units,
                             pad_token_id=self.tokenizer.pad_token_id, output_dir=output_dir, ledger=ledger)
        self.ledger, self.train_config = result.ledger, config
        return result

    # --------------------------------------------------------------- sample
    def max_record_tokens(self) -> int:
        """A token budget every grammar-bounded record fits in (each token is at least one byte)."""
        per_col = sum(len(c.name) + 12 + 6 * (c.max_chars if c.type in ("text", "categorical") else 24)
                      for c in self.body_spec.columns)
        return per_col + 8

    def _by_field(self, temperature: float, field_temperature: Mapping[str, float] | None):
        """The per-row temperature maker for ``field_temperature`` (None: one temperature for all)."""
        if not field_temperature:
            return None
        if self.grammar != derive_grammar(self.body_spec):
            raise ValueError("field_temperature follows the records the spec's own grammar writes, and this "
                             "generator has a user grammar: use one temperature")
        return FieldTemperatures(self.spec, self.tokenizer.token_bytes, temperature, field_temperature)

    def sample(self, n: int, *, batch_size: int = 16, temperature: float = 1.0, top_p: float = 1.0,
               seed: int | None = None, progress: bool = True, max_cache_gb: float = MAX_CACHE_GB,
               dtype: str = "fp32", field_temperature: Mapping[str, float] | None = None
               ) -> tuple[pd.DataFrame, SampleStats]:
        """``n`` records under the grammar.  ``field_temperature``: fields drawn at a temperature of their
        own (``temperature`` for the others; ``synth.records.field_temperature``)."""
        by_field = self._by_field(temperature, field_temperature)
        if self.spec.conditioning and self.conditioning is None:
            raise ValueError("a conditioned generator needs its conditioning distribution (set by the pipeline)")
        conditions = [()] * n
        if self.spec.conditioning:
            conditions = self.conditioning.sample(n, np.random.default_rng(seed))
        prompts = {c: self._prompt_ids(c) for c in dict.fromkeys(conditions)}
        records, bad = [], 0
        with decoding_model(self.model, dtype) as model:
            if len(prompts) == 1:  # one prompt: prefilled once and shared by the batch
                texts, stats = sample_texts(
                    model, self.tokenizer, self.grammar, next(iter(prompts.values())), n,
                    batch_size=batch_size, max_record_tokens=self.max_record_tokens(), temperature=temperature,
                    top_p=top_p, seed=seed, progress=progress, row_temperatures=by_field,
                )
                drawn = [(conditions[0], t) for t in texts]
            else:  # a prompt per record's condition, in one continuous batch
                texts, stats = sample_from_prompts(
                    model, self.tokenizer, [prompts[c] for c in conditions], grammar=self.grammar,
                    batch_size=batch_size, max_record_tokens=self.max_record_tokens(), temperature=temperature,
                    top_p=top_p, seed=seed, progress=progress, max_cache_gb=max_cache_gb,
                    row_temperatures=by_field,
                )
                drawn = [(c, t) for c, t in zip(conditions, texts, strict=True) if t is not None]
            for condition, t in drawn:
                try:
                    record = parse(t, self.body_spec)
                except RecordParseError:  # grammar and spec disagree (a user grammar): count, never emit
                    bad += 1
                    continue
                record.update(zip(self.spec.conditioning, map(plain_value, condition), strict=True))
                records.append({name: record[name] for name in self.spec.names})
        stats = stats or SampleStats()
        stats.requested = n
        stats.extra["unparseable_by_spec"] = bad
        stats.emitted = len(records)
        return texts_to_frame(records, self.spec), stats

    def vary(self, records: list[dict], *, batch_size: int = 16, temperature: float = 1.0, top_p: float = 1.0,
             seed: int | None = None, progress: bool = False, mode: str = "fields",
             fields_changed: float = 0.5, max_cache_gb: float = MAX_CACHE_GB,
             dtype: str = "fp32", field_temperature: Mapping[str, float] | None = None) -> tuple[list[dict], int]:
        """Private Evolution's variation for records: one new record per parent, under the grammar, so
        every child parses.  ``mode = "fields"``: each field is written anew with probability
        ``fields_changed`` (at least one), after the model's own training prompt, the parent's other
        fields pinned in the grammar; a field written anew sees the fields before it, not those after.
        ``mode = "rewrite"``: the model is shown the whole parent (synthetic, so public) in an
        instruction prompt and writes another record.  A child that does not close or parse is replaced
        by its parent; how many is returned beside the children.  ``field_temperature``: fields written
        anew at a temperature of their own, as in ``sample``."""
        if self.spec.conditioning:
            raise ValueError("variation of conditioned records is not supported: vary the whole record")
        if mode == "fields" and self.grammar != derive_grammar(self.body_spec):
            raise ValueError("field variation pins fields in the spec's own grammar, and this generator has a user "
                             "grammar: use mode='rewrite'")
        by_field = self._by_field(temperature, field_temperature)
        if mode == "fields":
            prompts, grammar = self._field_variations(records, fields_changed, np.random.default_rng(seed))
        elif mode == "rewrite":
            prompts, grammar = [self._rewrite_prompt(record) for record in records], self.grammar
        else:
            raise ValueError(f"variation mode must be fields or rewrite, got {mode!r}")
        with decoding_model(self.model, dtype) as model:
            texts, _ = sample_from_prompts(model, self.tokenizer, prompts, grammar=grammar,
                                           batch_size=batch_size, max_record_tokens=self.max_record_tokens(),
                                           temperature=temperature, top_p=top_p, seed=seed, progress=progress,
                                           max_cache_gb=max_cache_gb, row_temperatures=by_field)
        children, kept = [], 0
        for parent, text in zip(records, texts, strict=True):
            try:
                child = parse(text, self.body_spec) if text is not None else None
            except RecordParseError:
                child = None
            if child is None:
                kept += 1
                children.append(parent)
            else:
                children.append({name: child[name] for name in self.spec.names})
        return children, kept

    def _field_variations(self, records: list[dict], fields_changed: float,
                          rng: np.random.Generator) -> tuple[list[list[int]], list[str]]:
        """The training prompt for every child and its grammar: the fields kept from the parent pinned."""
        names = self.body_spec.names
        prompt, grammars = self._prompt_ids(), []
        for record in records:
            change = rng.random(len(names)) < fields_changed
            if not change.any():
                change[rng.integers(len(names))] = True
            pinned = {c: serialize_value(record, self.body_spec, c) for c, new in zip(names, change, strict=True) if not new}
            grammars.append(derive_grammar(self.body_spec, pinned=pinned))
        return [prompt] * len(records), grammars

    def _rewrite_prompt(self, record: dict) -> list[int]:
        kind = "a JSON object" if self.spec.serialization == "json" else "a Python dict"
        task = ((f"{self.spec.description}\n" if self.spec.description else "")
                + f"Here is one record:\n{serialize(record, self.body_spec)}\nWrite another record of the same "
                f"kind as {kind} with the keys {', '.join(self.body_spec.names)}: keep some of its fields and "
                "change others, so that it reads like a different real record.")
        return self.tokenizer.instruction_ids("You write data records.", task, plain_suffix="\n" + PROMPT)

    # ---------------------------------------------------------- persistence
    def save_pretrained(self, directory: str | Path) -> None:
        with atomic_directory(directory) as tmp:
            write_generator(tmp, self, KIND)
            (tmp / "grammar.lark").write_text(self.grammar)
