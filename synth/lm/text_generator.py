"""TextGenerator: DP-train a causal LM on a corpus of documents of any length, then sample documents.

A document is tokenised with the model's public tokenizer and split into chunks of at
most ``chunk_tokens`` tokens, the public prompt (description and the document's labels)
included: chunk 0 is prompt + the document's first tokens, chunk i > 0 is prompt + the
last ``overlap_tokens`` of chunk i-1 (context, no loss) + the next tokens; the document's
EOS closes its last chunk.  Every chunk of a document (or of a user's documents) is a
row of one privacy unit: DPTrainer samples units with Poisson sampling whatever their
length, takes at most ``max_chunks_per_unit`` of a sampled unit's chunks per step (at
random) and clips their summed gradient as one, so one unit moves the update by at most
C.  How many units have more chunks than that is counted (``chunk_report``).

Generation starts from the prompt of drawn labels (declared public weights or a DP
histogram, as the records road's conditioning) and samples free text up to
``max_new_tokens``; a document cut at that budget is kept and counted as truncated.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainer import PrivacyLedger, TrainConfig, train_model
from trainer.errors import ConfigError
from trainer.io import atomic_directory

from ..conditioning import ConditioningDistribution, plain_value
from .continuous import MAX_CACHE_GB, sample_from_prompts
from .decoding import SampleStats
from .decoding_model import decoding_model
from .roads import ModelChoice, build_model
from .saved import read_generator, write_generator
from .text_spec import TextSpec

KIND = "dpsynth.TextGenerator"


@dataclass
class ChunkReport:
    documents: int
    units: int
    chunks: int
    units_over_bound: int  # units with more chunks than max_chunks_per_unit: each step trains on k of them
    longest_unit_chunks: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class TextGenerator:
    """fit(frame) with document- or user-level DP, then sample(n) documents."""

    def __init__(self, spec: TextSpec, choice: ModelChoice | None = None, *, _built=None):
        self.spec = spec
        self.choice = choice or ModelChoice()
        self.model, self.tokenizer, self.model_description = _built or build_model(self.choice)
        self.conditioning: ConditioningDistribution | None = None
        self.ledger: PrivacyLedger | None = None
        self.chunk_report: ChunkReport | None = None
        self.evolved: pd.DataFrame | None = None  # Private Evolution's final population (evolve roads)

    # ---------------------------------------------------------------- prompt
    def prompt_ids(self, labels: tuple = (), context: str | None = None) -> list[int]:
        """The prompt of a document with these label values and context (no loss on it)."""
        given = "; ".join(f"{n} = {plain_value(v)!r}" for n, v in zip(self.spec.label_names, labels, strict=True))
        return self._prompt(given, context)

    def unconditional_prompt_ids(self) -> list[int]:
        """The prompt with no labels and no context: what guidance contrasts a document's prompt with."""
        return self._prompt("", None)

    def _prompt(self, given: str, context: str | None) -> list[int]:
        task = (f"{self.spec.description}\n" if self.spec.description else "") + (
            f"{self.spec.context_label}: {context}\n" if context is not None else "") + (
            f"Given {given}, write one document." if given else "Write one document.")
        return self.tokenizer.instruction_ids("You write documents.", task)

    # --------------------------------------------------------------- chunks
    def chunk(self, frame: pd.DataFrame) -> tuple[list[dict[str, Any]], list, ChunkReport]:
        """Training rows (chunks), the unit of each row, and the chunk counts."""
        spec, eos = self.spec, self.tokenizer.eos_token_id
        rows, units = [], []
        per_unit: dict = defaultdict(int)
        for i, record in enumerate(frame.to_dict("records")):
            prompt = self.prompt_ids(tuple(record[n] for n in spec.label_names),
                                     str(record[spec.context]) if spec.context else None)
            room = spec.chunk_tokens - len(prompt)
            if room <= spec.overlap_tokens:
                raise ConfigError(f"the prompt takes {len(prompt)} of the {spec.chunk_tokens} tokens of a chunk: raise "
                                  "text.chunk_tokens or shorten text.description")
            ids = self.tokenizer.encode(str(record[spec.text])) + [eos]
            unit = i if spec.user_column is None else record[spec.user_column]
            start = 0
            while start < len(ids):
                context = ids[max(0, start - spec.overlap_tokens):start]  # what the previous chunk ended with
                piece = ids[start:start + room - len(context)]
                rows.append({"input_ids": prompt + context + piece,
                             "loss_mask": [0] * (len(prompt) + len(context)) + [1] * len(piece)})
                units.append(unit)
                per_unit[unit] += 1
                start += len(piece)
        k = spec.max_chunks_per_unit
        report = ChunkReport(documents=len(frame), units=len(per_unit), chunks=len(rows),
                             units_over_bound=sum(c > k for c in per_unit.values()),
                             longest_unit_chunks=max(per_unit.values(), default=0))
        return rows, units, report

    # ------------------------------------------------------------------ fit
    def fit(self, frame: pd.DataFrame, config: TrainConfig, *, output_dir: str | Path | None = None,
            ledger: PrivacyLedger | None = None, stage: str = "train"):
        """DP-train on the private documents; the unit is the document or the user (spec.privacy_unit).
        ``stage`` names this training in the ledger (other stages in ``ledger`` are prior spend)."""
        import dataclasses

        if self.spec.max_chunks_per_unit > config.physical_batch_size:
            raise ConfigError(f"text.max_chunks_per_unit = {self.spec.max_chunks_per_unit} chunks of a unit share one "
                              f"micro-batch, but train.physical_batch_size is {config.physical_batch_size}: raise it "
                              "or lower max_chunks_per_unit")
        rows, units, self.chunk_report = self.chunk(frame)
        unit_kind = "document" if self.spec.user_column is None else "user"
        if config.privacy_unit != unit_kind or config.max_examples_per_user != self.spec.max_chunks_per_unit:
            config = dataclasses.replace(config, privacy_unit=unit_kind,
                                         max_examples_per_user=self.spec.max_chunks_per_unit)
        result = train_model(self.model, rows, config, units=units, pad_token_id=self.tokenizer.pad_token_id,
                             output_dir=output_dir, ledger=ledger, stage=stage)
        self.ledger = result.ledger
        return result

    # --------------------------------------------------------------- sample
    def sample(self, n: int, *, batch_size: int = 16, max_new_tokens: int = 256, temperature: float = 1.0,
               top_p: float = 1.0, seed: int | None = None, progress: bool = True,
               contexts: list[str] | None = None, guidance: float = 1.0,
               max_cache_gb: float = MAX_CACHE_GB, dtype: str = "fp32") -> tuple[pd.DataFrame, SampleStats]:
        """``n`` documents; with a context column, ``contexts`` gives each document's context.  Every
        document has its own prompt (its drawn labels, its context), all in one continuous batch.
        ``guidance`` > 1 follows the labels and context more closely (classifier-free guidance against
        the prompt without them; a second row per document)."""
        if self.spec.labels and self.conditioning is None:
            raise ValueError("a label-conditioned generator needs its label distribution (conditioning)")
        if (contexts is None) != (self.spec.context is None) or (contexts is not None and len(contexts) != n):
            raise ConfigError(f"give one context per document exactly when text.context is set ({n} documents, "
                              f"{'no' if contexts is None else len(contexts)} contexts)")
        draws = self.conditioning.sample(n, np.random.default_rng(seed)) if self.spec.labels else [()] * n
        contexts = contexts if contexts is not None else [None] * n
        prompts, cached = [], {}
        for labels, context in zip(draws, contexts, strict=True):
            key = (labels, context)
            if key not in cached:
                cached[key] = self.prompt_ids(labels, context)
            prompts.append(cached[key])
        if guidance != 1.0 and not (self.spec.labels or self.spec.context):
            raise ConfigError("generate.guidance_scale guides documents towards their labels or context, and this "
                              "corpus has neither: leave it at 1")
        texts, stats = self._complete(prompts, batch_size=batch_size, max_new_tokens=max_new_tokens,
                                      temperature=temperature, top_p=top_p, seed=seed, progress=progress,
                                      guidance=guidance, max_cache_gb=max_cache_gb, dtype=dtype)
        out = []
        for labels, context, text in zip(draws, contexts, texts, strict=True):
            ctx = {self.spec.context: context} if self.spec.context else {}
            out.append({**dict(zip(self.spec.label_names, map(plain_value, labels), strict=True)), **ctx,
                        self.spec.text: text})
        stats.requested, stats.emitted = n, len(out)
        context_column = [self.spec.context] if self.spec.context else []
        frame = pd.DataFrame(out, columns=[*self.spec.label_names, *context_column, self.spec.text])
        frame[self.spec.text] = frame[self.spec.text].astype("string")
        return frame, stats

    def vary(self, parents: list[dict], rng: np.random.Generator, *, keep: float = 0.5, batch_size: int = 16,
             max_new_tokens: int = 256, temperature: float = 1.0, top_p: float = 1.0,
             progress: bool = True, max_cache_gb: float = MAX_CACHE_GB, dtype: str = "fp32") -> list[dict]:
        """Private Evolution's variation for documents: each child keeps its parent's labels and the
        first m of its words (m uniform in [0, ``keep`` × its words]) and the model writes the rest
        from there, under the prompt it was trained with; m = 0 redraws the document afresh.  The kept
        opening counts against ``max_new_tokens``, so a child is no longer than a fresh sample.  A
        continuation, not a paraphrase: the DP-fine-tuned model knows how documents go on, and a
        paraphrase instruction would be a prompt it was never trained on."""
        if self.spec.context:
            raise ConfigError("Private Evolution does not vary documents with a context column (text.context)")
        prompts, kept, budgets = [], [], []
        for parent in parents:
            words = str(parent[self.spec.text]).split(" ")
            head = " ".join(words[:int(rng.integers(0, int(keep * len(words)) + 1))])
            head_ids = self.tokenizer.encode(head) if head else []
            if len(head_ids) >= max_new_tokens:  # a parent over the budget: keep an opening that leaves a token
                head_ids = head_ids[:max_new_tokens - 1]
                head = self.tokenizer.decode(head_ids)
            labels = tuple(parent[n] for n in self.spec.label_names)
            prompts.append(self.prompt_ids(labels) + head_ids)
            kept.append(head)
            budgets.append(max_new_tokens - len(head_ids))
        texts = self._complete(prompts, batch_size=batch_size, max_new_tokens=max_new_tokens, temperature=temperature,
                               top_p=top_p, seed=int(rng.integers(1 << 31)), progress=progress,
                               new_token_budgets=budgets, max_cache_gb=max_cache_gb, dtype=dtype)[0]
        return [{**parent, self.spec.text: head + (text or "")}
                for parent, head, text in zip(parents, kept, texts, strict=True)]

    def _complete(self, prompts: list[list[int]], *, batch_size: int, max_new_tokens: int, temperature: float,
                  top_p: float, seed: int | None, progress: bool, new_token_budgets: list[int] | None = None,
                  guidance: float = 1.0, max_cache_gb: float = MAX_CACHE_GB, dtype: str = "fp32"):
        """One completion per prompt in one continuous batch (on ``decoding_model``: a LoRA adapter merged);
        ``new_token_budgets``: each prompt's own ``max_new_tokens``; ``guidance``: against the prompt
        with no labels and no context."""
        with decoding_model(self.model, dtype) as model:  # a finished row's slot takes the next prompt at once
            return sample_from_prompts(model, self.tokenizer, prompts, batch_size=batch_size,
                                       max_record_tokens=max_new_tokens - 1, temperature=temperature,
                                       top_p=top_p, seed=seed, progress=progress, keep_unfinished=True,
                                       record_budgets=None if new_token_budgets is None
                                       else [b - 1 for b in new_token_budgets],
                                       guidance=guidance, max_cache_gb=max_cache_gb,
                                       unconditional=[self.unconditional_prompt_ids()] * len(prompts) if guidance != 1.0 else None)

    # ---------------------------------------------------------- persistence
    def save_pretrained(self, directory: str | Path) -> None:
        with atomic_directory(directory) as tmp:
            write_generator(tmp, self, KIND, chunk_report=self.chunk_report.to_dict() if self.chunk_report else None)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "TextGenerator":
        meta, choice, built, ledger, conditioning = read_generator(directory, KIND)
        gen = cls(TextSpec.from_dict(meta["spec"]), choice, _built=built)
        gen.ledger, gen.conditioning = ledger, conditioning
        if meta.get("chunk_report"):
            gen.chunk_report = ChunkReport(**meta["chunk_report"])
        return gen
