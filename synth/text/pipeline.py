"""train -> generate -> export for a corpus of documents: the library functions behind `dpsynth run`
with a ``[text]`` config.

The run folder is the records road's (``synth.run_folder``): one runner at a time, checkpoints that
resume, the label histogram paid once and kept.  The export holds only synthetic documents
and the card; statistics of the private corpus (chunk counts, copies of training documents)
go to the run folder's reports, never to the export.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pandas as pd

from trainer import PrivacyLedger
from trainer.errors import DPSynthError
from trainer.io import atomic_write_text
from trainer.seeds import seeded_torch

from ..card import privacy_block
from ..domains import OTHER_CATEGORY
from ..export import export
from ..lm.text_generator import TextGenerator
from ..ranks import is_worker, open_gate
from ..run_config import SynthConfig
from ..run_folder import (
    conditioning_distribution,
    domain_estimates,
    generator_fingerprint,
    load_saved_generator,
    refuse_existing_export,
    resumable_sample,
    run_folder,
    saved_generator_path,
)
from ..validation import check_domain
from .corpus import load_corpus


def _public_facts(config: SynthConfig) -> list[str]:
    spec = config.text
    facts = [f for c in spec.labels if not c.estimate for f in c.public_facts()]
    if spec.description:
        facts.append(f"prompt description: {spec.description!r}")
    if spec.label_weights is not None:
        facts.append(f"distribution of {spec.label_names[0]}: {spec.label_weights}")
    return facts


def train(config: SynthConfig, *, progress: bool = True) -> tuple[TextGenerator, pd.DataFrame]:
    with run_folder(config):
        return _train(config, progress=progress)


def _train(config: SynthConfig, *, progress: bool) -> tuple[TextGenerator, pd.DataFrame]:
    config.model.check_source()
    spec, run_dir = config.text, Path(config.output.dir)
    frame = load_corpus(config.data.path, spec)
    n_read = len(frame)
    users = frame[spec.user_column].tolist() if spec.user_column else None
    n_units = len(set(users)) if users else len(frame)
    ledger = PrivacyLedger(delta=config.train.resolve_delta(n_units), accountant=config.train.accountant,
                           privacy_unit="user" if users else "document", declared_public=_public_facts(config),
                           n_units=n_units)
    estimated = set(spec.estimated_labels)
    if estimated:  # undeclared label lists: measured with DP (paid, kept in the run folder), then fixed; a
        # document whose value the list left out keeps it as OTHER_CATEGORY (trained on, not dropped)
        from ..domains import apply_estimates

        found = apply_estimates(spec.domain_spec(), domain_estimates(config, frame, users, ledger), other=True)
        spec = spec.with_labels([found.column(n) for n in spec.label_names])
        config = dataclasses.replace(config, text=spec, spec=spec.as_dataset_spec())
    frame, domain = check_domain(frame, config.spec, policy=config.data.invalid_rows, estimated=estimated,
                                 source=config.data.path)
    users = frame[spec.user_column].tolist() if spec.user_column else None
    train_config = dataclasses.replace(config.train, progress=progress and config.train.progress, delta=ledger.delta)
    with seeded_torch(config.train.seed, "model_init"):  # the same initial model for a seeded run
        generator = TextGenerator(spec, config.model)
    if spec.labels:  # one row per document is one per unit; at user level one row per user (in the histogram)
        generator.conditioning = conditioning_distribution(config, frame, users, ledger)
    open_gate()  # torchrun: the releases are saved, the other ranks may read them and join the training
    road = config.evolve.road
    if road == "fine-tune+evolve":  # DP fine-tuning up to its share of the ε, the histograms get the rest
        from ..evolution import finetune_target

        train_config = dataclasses.replace(train_config, target_epsilon=finetune_target(
            config.train.target_epsilon, config.evolve.budget_share, ledger))
    if road != "evolve":  # evolve: the public model as it is, no DP training
        generator.fit(frame, train_config, output_dir=run_dir / "checkpoints", ledger=ledger)
    if road != "fine-tune":
        from .evolve_road import evolve_documents

        generator.evolved = evolve_documents(config, generator, frame, users, ledger, progress=progress)
        generator.ledger = ledger
    if is_worker():  # rank 0 alone writes the run folder
        return generator, frame
    c = generator.chunk_report  # None on the evolve road: nothing was chunked for training
    report = {"note": "NOT differentially private: statistics of the private corpus, do not publish",
              "documents_read": n_read, "domain": domain.to_dict(), "chunks": c.to_dict() if c else None}
    atomic_write_text(run_dir / "data_report.json", json.dumps(report, indent=2, sort_keys=True))
    if c is not None and c.units_over_bound:
        print(f"dpsynth: {c.units_over_bound} of {c.units} units have more than {spec.max_chunks_per_unit} chunks "
              f"(longest: {c.longest_unit_chunks}); each step trains on {spec.max_chunks_per_unit} of them, drawn at "
              "random (not DP: kept in the run folder)", file=sys.stderr)
    generator.save_pretrained(run_dir / "generator")
    return generator, frame


def generate_and_export(config: SynthConfig, generator: TextGenerator, private: pd.DataFrame | None, *,
                        progress: bool = True) -> dict:
    g, spec, run_dir = config.generate, config.text, Path(config.output.dir)

    def sample(count: int, seed: int | None):
        return generator.sample(count, batch_size=g.batch_size, max_new_tokens=g.max_new_tokens,
                                temperature=g.temperature, top_p=g.top_p, seed=seed, progress=progress,
                                guidance=g.guidance_scale, max_cache_gb=g.max_cache_gb, dtype=g.dtype)

    evolved = getattr(generator, "evolved", None)
    if evolved is not None:  # Private Evolution: the final population is the corpus (no more sampling)
        from ..lm.decoding import SampleStats

        synthetic, stats = evolved, SampleStats(requested=g.n, emitted=len(evolved))
    else:
        synthetic, stats = resumable_sample(config, sample, fingerprint=generator_fingerprint(config))
    stats.requested = g.n
    if len(synthetic) == 0:
        raise DPSynthError(f"none of the {g.n} requested documents was generated: nothing was exported")
    ledger = generator.ledger
    truncated = stats.extra.get("truncated", 0)
    card = {
        # the chunk bound is DP-SGD's; the evolve road trains nothing (a document is one vote)
        "privacy": privacy_block(ledger, max_examples_per_user=spec.max_chunks_per_unit
                                 if any(e.stage == "train" for e in ledger.events) else None),
        "declared_public": ledger.declared_public,
        "paid_for": [e.stage for e in ledger.events],
        "estimated_with_dp": [e.details["result"] for e in ledger.events if e.stage.startswith("domain:")],
        "model": generator.model_description,
        "spec": {"columns": list(synthetic.columns), "text": spec.text, "labels": spec.label_names,
                 "chunk_tokens": spec.chunk_tokens, "max_chunks_per_unit": spec.max_chunks_per_unit},
        "data_checks": {"invalid_rows": config.data.invalid_rows,
                        "estimated_columns": [c.name for c in config.spec.columns if c.estimate],
                        "other_category": OTHER_CATEGORY if any(c.estimate and c.type == "categorical"
                                                                for c in config.spec.columns) else None},
        "generation": {"requested": stats.requested, "emitted": stats.emitted, "hit_limit": 0,
                       "truncated": truncated, "max_new_tokens": g.max_new_tokens, "temperature": g.temperature,
                       "top_p": g.top_p, "guidance_scale": g.guidance_scale, "decoding": f"free text, at most {g.max_new_tokens} tokens a document "
                       f"({truncated} cut at that length)"},
        **({"evolve": {"road": config.evolve.road, "iterations": config.evolve.iterations, "k": config.evolve.k}}
           if evolved is not None else {}),
        "seed": g.seed,
    }
    if evolved is not None:
        from .evolve_road import evolution_summary

        card["generation"]["summary"] = evolution_summary(config, ledger)
        card["generation"]["decoding"] = (f"free text, at most {g.max_new_tokens} new tokens a draw or a variation "
                                          "(a variation keeps its parent's opening words)")
    if generator.conditioning is not None:
        card["conditioning"] = generator.conditioning.to_dict()
    out = export(synthetic, run_dir / "export", fmt=config.output.format, card=card, overwrite=config.output.overwrite)
    if private is None:
        private = load_corpus(config.data.path, spec)
    copies = int(synthetic[spec.text].isin(set(private[spec.text])).sum())  # not DP: stays in the run folder
    report = {"exact_copies_of_training_documents": copies, "emitted": stats.emitted, "truncated": truncated,
              "tokens_per_second": stats.tokens_per_second, "note": "NOT differentially private: do not publish"}
    atomic_write_text(run_dir / "private_report.json", json.dumps(report, indent=2, sort_keys=True))
    return {"export": str(out), "epsilon": card["privacy"]["epsilon"], "delta": ledger.delta, "rows": len(synthetic),
            "report": {**report, "hit_limit": 0, "rejected_by_spec": 0,
                       "exact_copies_of_training_rows": copies},
            "sample": synthetic.head(5), "synthetic": synthetic, "card": card}


def generate(config: SynthConfig, *, progress: bool = True) -> dict:
    saved = saved_generator_path(config)
    with run_folder(config, fresh=False):
        generator = load_saved_generator(saved, TextGenerator)
        if config.evolve.road != "fine-tune":
            from .evolve_road import saved_population

            generator.evolved = saved_population(config)
        return generate_and_export(config, generator, None, progress=progress)


def run(config: SynthConfig, *, progress: bool = True) -> dict:
    refuse_existing_export(config)
    with run_folder(config):
        generator, private = _train(config, progress=progress)
        if is_worker():  # torchrun: rank 0 alone generates and exports
            return {"worker": True}
        return generate_and_export(config, generator, private, progress=progress)


def audit(config: SynthConfig, *, canaries: int = 500, seed: int | None = None):
    """Privacy audit of this text config (`dpsynth audit`): a fresh generator trained on the private
    documents plus a coin-chosen half of ``canaries`` random documents (each a unit of its own, one
    chunk), every canary scored by its loss, ε bounded from below (evaluation.audit).  The audited
    model is never exported; the result goes to ``<output.dir>/audit.json``."""
    import numpy as np

    from evaluation.audit import run_audit
    from trainer.errors import ConfigError

    from ..canaries import make_canary_documents

    if canaries < 20:
        raise ConfigError(f"the audit needs at least 20 canaries to say anything, got {canaries}")
    spec = config.text
    frame = load_corpus(config.data.path, spec)
    generator = TextGenerator(spec, config.model)
    rng = np.random.default_rng(seed)
    chunks, owners, _ = generator.chunk(make_canary_documents(spec.text, spec.label_names, canaries, rng))
    first = {}
    for row, owner in zip(chunks, owners, strict=True):  # a canary is one row: its first chunk
        first.setdefault(owner, row)
    canary_rows = list(first.values())
    rows, units, _ = generator.chunk(frame)
    train_seed = seed if seed is not None else config.train.seed  # reproducible audits only: nothing is exported
    train_config = dataclasses.replace(config.train, seed=train_seed, insecure_seed=train_seed is not None,
                                       privacy_unit="document" if spec.user_column is None else "user",
                                       max_examples_per_user=spec.max_chunks_per_unit)
    result = run_audit(generator.model, rows, canary_rows, train_config, pad_token_id=generator.tokenizer.pad_token_id,
                       seed=seed, units=units)
    Path(config.output.dir).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(config.output.dir) / "audit.json", json.dumps(result.to_dict(), indent=2, default=str))
    return result
