"""train -> generate -> export, the library functions behind `dpsynth run`.

The run folder ``<output.dir>`` holds checkpoints (resumable), the trained
generator with its ledger, and a private report; ``<output.dir>/export`` is the
shareable synthetic data with its card.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pandas as pd

from trainer import PrivacyLedger
from trainer.io import atomic_write_text
from trainer.seeds import seeded_torch

from .card import card_base
from .export import export
from .loading import load_table, typed_frame
from .ranks import is_worker, open_gate
from .records.generator import RecordGenerator
from .records.serialize import frame_to_texts
from .run_config import SynthConfig
from .run_folder import (
    conditioning_distribution,
    domain_estimates,
    generator_fingerprint,
    load_saved_generator,
    refuse_existing_export,
    resumable_sample,
    run_folder,
    saved_generator_path,
)
from .validation import check_domain


def load_private(config: SynthConfig, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """The private rows, typed by the spec: from ``data.path``, or ``frame`` (a DataFrame given in
    memory by the Python API, where ``data.path`` only names it in messages)."""
    raw = load_table(config.data.path) if frame is None else frame.reset_index(drop=True)
    return typed_frame(raw, config.spec, source=config.data.path)


def _read_private(config: SynthConfig, given: pd.DataFrame | None) -> tuple[pd.DataFrame, list[str]]:
    """The typed private frame, and the data's columns that the spec leaves out (warned)."""
    raw = load_table(config.data.path) if given is None else given.reset_index(drop=True)
    kept = set(config.spec.names) | {config.spec.privacy_unit}
    left_out = [str(c) for c in raw.columns if c not in kept]
    if left_out:
        print(f"dpsynth: warning: {config.data.path}: columns {left_out} are not in the spec and will not be "
              "synthesised (the card lists them)", file=sys.stderr)
    return typed_frame(raw, config.spec, source=config.data.path), left_out


def train(config: SynthConfig, *, progress: bool = True, frame: pd.DataFrame | None = None
          ) -> tuple[RecordGenerator, pd.DataFrame]:
    """DP-train a generator on the private data (resuming from checkpoints in the run folder);
    ``frame``: the private rows in memory instead of ``data.path``."""
    with run_folder(config):
        return _train(config, progress=progress, given=frame)


def _train(config: SynthConfig, *, progress: bool, given: pd.DataFrame | None = None
           ) -> tuple[RecordGenerator, pd.DataFrame]:
    config.model.check_source()
    frame, left_out = _read_private(config, given)
    data_report: dict = {"note": "NOT differentially private: statistics of the private data, do not publish",
                         "rows_read": len(frame), "columns_not_synthesised": left_out}
    grammar = None
    if config.spec.grammar:
        from .records.user_grammar import check_private_records, load_user_grammar

        grammar = load_user_grammar(config.spec.grammar)
        # the grammar constrains what is generated: with conditioning columns, the other columns only
        body = config.spec.body()
        note = (f" (records of {body.names}: the conditioning columns {config.spec.conditioning} sit in the "
                "prompt, not in the record)") if config.spec.conditioning else ""
        bad = check_private_records(grammar, frame_to_texts(frame, body), source=config.data.path,
                                    skip=config.data.skip_unparseable, note=note)
        if len(bad) == len(frame):
            from .loading import DataError

            raise DataError(f"{config.data.path}: every one of the {len(frame)} private rows is rejected by the "
                            f"grammar {config.spec.grammar}; nothing is left to train on")
        frame = frame.drop(index=frame.index[bad])
        data_report["rejected_by_grammar"] = len(bad)
        if bad:
            print(f"dpsynth: {len(bad)} of {data_report['rows_read']} private rows do not parse under the grammar "
                  "and are left out (data.skip_unparseable)", file=sys.stderr)
    run_dir = Path(config.output.dir)
    n_units = frame[config.spec.privacy_unit].nunique() if config.spec.privacy_unit != "example" else len(frame)
    accountant = config.train.accountant
    if config.columns.model != "lm":
        from .records.column_road import check_column_road, note_accountant, run_accountant

        check_column_road(config)
        note_accountant(config)
        accountant = run_accountant(config)
    ledger = PrivacyLedger(delta=config.train.resolve_delta(n_units), accountant=accountant,
                           privacy_unit=config.train.privacy_unit, declared_public=config.spec.public_facts(),
                           n_units=int(n_units))
    # δ is fixed here, from the rows read, and the trainer keeps it whatever the checks below drop
    train_config = dataclasses.replace(config.train, progress=progress and config.train.progress, delta=ledger.delta,
                                       accountant=accountant)
    spec = config.spec
    estimated = {c.name for c in spec.columns if c.estimate}
    if estimated:
        from .domains import apply_estimates

        spec = apply_estimates(spec, domain_estimates(config, frame, _units(config, frame), ledger), other=True)
    frame, domain = check_domain(frame, spec, policy=config.data.invalid_rows, estimated=estimated,
                                 source=config.data.path)
    data_report["domain"] = domain.to_dict()
    if not is_worker():
        atomic_write_text(run_dir / "data_report.json", json.dumps(data_report, indent=2, sort_keys=True))
    if domain.invalid or data_report.get("rejected_by_grammar"):
        print(f"dpsynth: {domain.summary()}; rejected by the grammar: {data_report.get('rejected_by_grammar', 0)}",
              file=sys.stderr)
    units = _units(config, frame)
    if config.columns.model != "lm":
        generator = _train_column_road(config, spec, frame, units, ledger, train_config, progress=progress)
    elif config.evolve.road != "fine-tune":
        generator = _train_evolve_road(config, spec, frame, units, ledger, train_config, grammar, progress=progress)
    else:
        with seeded_torch(config.train.seed, "model_init"):  # the same initial model for a seeded run
            generator = RecordGenerator(spec, config.model, grammar=grammar)
        if config.spec.conditioning:
            generator.conditioning = conditioning_distribution(config, frame, units, ledger)
        open_gate()  # torchrun: the releases are saved, the other ranks may read them and join the training
        generator.fit(frame, train_config, units=units, output_dir=run_dir / "checkpoints", ledger=ledger)
    if not is_worker():
        generator.save_pretrained(run_dir / "generator")
    return generator, frame


def _train_column_road(config: SynthConfig, spec, frame: pd.DataFrame, units: list | None, ledger: PrivacyLedger,
                       train_config, *, progress: bool):
    """The column model for the categorical and numeric columns; the LM, given them, for the text ones."""
    from .records.column_road import ColumnTableGenerator, fit_column_model, split_spec

    has_text = any(c.type == "text" for c in spec.columns)
    column_model = fit_column_model(config, spec, frame, units, ledger, progress=progress,
                                    share=config.columns.budget_share if has_text else 1.0)
    if not has_text:
        return ColumnTableGenerator(spec, column_model, ledger)
    with seeded_torch(config.train.seed, "model_init"):
        generator = RecordGenerator(split_spec(spec), config.model)
    generator.conditioning = column_model
    generator.fit(frame, train_config, units=units, output_dir=Path(config.output.dir) / "checkpoints", ledger=ledger)
    return generator


def _train_evolve_road(config: SynthConfig, spec, frame: pd.DataFrame, units: list | None, ledger: PrivacyLedger,
                       train_config, grammar, *, progress: bool) -> RecordGenerator:
    """Private Evolution, with the public model or (fine-tune+evolve) the DP-fine-tuned one as its
    random and variation model; the final population rides on the generator as ``evolved``."""
    from .records.evolve_road import evolve_records, finetune_target

    with seeded_torch(config.train.seed, "model_init"):
        generator = RecordGenerator(spec, config.model, grammar=grammar)
    if config.evolve.road == "fine-tune+evolve":
        share = dataclasses.replace(train_config, target_epsilon=finetune_target(config, ledger))
        generator.fit(frame, share, units=units, output_dir=Path(config.output.dir) / "checkpoints", ledger=ledger)
    generator.evolved = evolve_records(config, generator, frame, units, ledger, progress=progress)
    generator.ledger = ledger
    return generator


def _units(config: SynthConfig, frame: pd.DataFrame) -> list | None:
    return frame[config.spec.privacy_unit].tolist() if config.spec.privacy_unit != "example" else None


# re-draws of the records the grammar's token budget or the spec rejected, before giving up on n
RESAMPLE_ROUNDS = 5


def sample_until(sample, n: int, seed: int | None):
    """``n`` usable rows from ``sample(count, seed) -> (frame, SampleStats)``: what the token budget or
    the spec rejected is drawn again (each round its own derived seed), at most RESAMPLE_ROUNDS more
    times; short of ``n`` after that, what exists is returned and the shortfall is said."""
    from trainer.seeds import stream_seed

    frames, stats, need = [], None, n
    for attempt in range(RESAMPLE_ROUNDS + 1):
        part, part_stats = sample(need, seed if seed is None or attempt == 0 else stream_seed(seed, f"redraw:{attempt}"))
        frames.append(part)
        stats = part_stats if stats is None else stats.merge(part_stats)
        need -= len(part)
        if need <= 0:
            break
    else:
        print(f"dpsynth: warning: {need} of {n} rows were still missing after {RESAMPLE_ROUNDS} re-draws of the "
              "rejected ones (did not close within the token budget, or rejected by the spec): raise the columns' "
              "max_chars / generate.max_new_tokens, or check the grammar", file=sys.stderr)
    stats.requested = n
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return frame.head(n), stats


def training_texts(private: pd.DataFrame, spec) -> frozenset[str]:
    """The private rows as serialised records, to count exact copies (not DP: never exported)."""
    return frozenset(frame_to_texts(private, spec))


def count_exact_copies(private_texts: frozenset[str], synthetic: pd.DataFrame, spec) -> int:
    """How many synthetic rows serialise to a training row, field for field."""
    return sum(t in private_texts for t in frame_to_texts(synthetic, spec))


def generate_and_export(config: SynthConfig, generator: RecordGenerator, private: pd.DataFrame | None, *,
                        progress: bool = True, schema_inferred: bool = False) -> dict:
    from trainer.errors import DPSynthError

    g = config.generate

    def draw(count: int, seed: int | None):
        return generator.sample(count, batch_size=g.batch_size, temperature=g.temperature, top_p=g.top_p,
                                seed=seed, progress=progress, max_cache_gb=g.max_cache_gb, dtype=g.dtype,
                                field_temperature=g.field_temperature)

    def sample(count: int, seed: int | None):
        return sample_until(draw, count, seed)

    evolved = getattr(generator, "evolved", None)  # a ColumnTableGenerator has none
    if evolved is not None:  # Private Evolution: the final population is the data (no more sampling)
        from .lm.decoding import SampleStats

        synthetic, stats = evolved, SampleStats(requested=g.n, emitted=len(evolved))
    else:
        synthetic, stats = resumable_sample(config, sample, fingerprint=generator_fingerprint(config))
    stats.requested = g.n
    rejected = stats.extra.get("unparseable_by_spec", 0)
    if len(synthetic) == 0:
        raise DPSynthError(f"none of the {g.n} requested records could be used (did not close within the token "
                           f"budget: {stats.hit_limit}; rejected by the spec: {rejected}): nothing was exported")
    ledger = generator.ledger
    run_dir = Path(config.output.dir)
    data_report = run_dir / "data_report.json"
    left_out = json.loads(data_report.read_text()).get("columns_not_synthesised", []) if data_report.is_file() else []
    card = {
        **card_base(config, generator, left_out=left_out, schema_inferred=schema_inferred),
        "generation": {"requested": stats.requested, "emitted": stats.emitted, "hit_limit": stats.hit_limit,
                       "rejected_by_spec": rejected, "temperature": g.temperature,
                       **({"field_temperature": g.field_temperature} if g.field_temperature else {}), "top_p": g.top_p,
                       "redrawn": stats.hit_limit + rejected},
        **({"evolve": {"road": config.evolve.road, "iterations": config.evolve.iterations, "k": config.evolve.k}}
           if evolved is not None else {}),
        "seed": g.seed,
    }
    if generator.conditioning is not None:
        card["conditioning"] = generator.conditioning.to_dict()
    if evolved is not None:
        from .records.evolve_road import evolution_summary

        card["generation"]["summary"] = evolution_summary(config, ledger)
    out = export(synthetic, run_dir / "export", fmt=config.output.format, card=card, overwrite=config.output.overwrite)
    # not DP: computed from the private rows; stays in the run folder, out of the export
    if private is None:
        private = load_private(config)
    dupes = count_exact_copies(training_texts(private, generator.spec), synthetic, generator.spec)
    report = {"exact_copies_of_training_rows": dupes, "requested": g.n, "emitted": len(synthetic),
              "hit_limit": stats.hit_limit,
              "rejected_by_spec": rejected,
              "tokens_per_second": stats.tokens_per_second, "note": "NOT differentially private: do not publish"}
    atomic_write_text(run_dir / "private_report.json", json.dumps(report, indent=2, sort_keys=True))
    return {"export": str(out), "epsilon": card["privacy"]["epsilon"], "delta": ledger.delta, "rows": len(synthetic),
            "report": report, "sample": synthetic.head(5), "synthetic": synthetic, "card": card}


def generate(config: SynthConfig, *, progress: bool = True) -> dict:
    """Sample and export from the generator a previous ``train`` saved in the run folder."""
    saved = saved_generator_path(config)
    with run_folder(config, fresh=False):
        generator = load_saved_generator(saved, _generator_class(saved))
        if config.evolve.road != "fine-tune":
            from .records.evolve_road import saved_population

            generator.evolved = saved_population(config, generator.spec)
        return generate_and_export(config, generator, None, progress=progress)


def _generator_class(saved: Path):
    from .records.column_road import KIND, ColumnTableGenerator
    from .saved_meta import read_meta

    return ColumnTableGenerator if read_meta(saved, KIND) is not None else RecordGenerator


def run(config: SynthConfig, *, progress: bool = True, frame: pd.DataFrame | None = None) -> dict:
    """Train, generate, export.  Checkpoints of an interrupted run are resumed; ``overwrite``
    starts afresh (it removes this run's own artefacts, nothing else in the folder).
    ``frame``: the private rows in memory instead of ``data.path``."""
    refuse_existing_export(config)
    with run_folder(config):
        generator, private = _train(config, progress=progress, given=frame)
        if is_worker():  # torchrun: rank 0 alone generates and exports
            return {"worker": True}
        result = generate_and_export(config, generator, private, progress=progress)
        if config.evaluation is not None:
            # scored against the data file as it is, not the rows as clipped or filtered for training
            result["evaluation"] = evaluate_run(config, generator.grammar, load_private(config, frame),
                                                result["synthetic"], result["card"])
        return result


def evaluate_run(config: SynthConfig, grammar_text: str, private: pd.DataFrame, synthetic: pd.DataFrame,
                 card: dict):
    """Score the synthetic records against the private ones; the report (not DP) goes to
    ``<output.dir>/evaluation``, never into the export."""
    from evaluation import Encoder, EvalSpec, RecordGrammar, evaluate

    table = [c.name for c in config.spec.columns if c.type != "text"]
    spec = EvalSpec.from_dict({"spec": {"columns": config.spec.names, "serialization": config.spec.serialization},
                               "evaluation": {"table_columns": table, **config.evaluation}})
    report = evaluate(private, synthetic, spec, RecordGrammar.from_text(grammar_text), Encoder(spec.encoder),
                      sources=(config.data.path, "synthetic (this run)"))
    report.info["privacy"] = {k: card["privacy"].get(k) for k in ("epsilon", "delta", "accountant", "privacy_unit")}
    report.save(Path(config.output.dir) / "evaluation")
    return report


def audit(config: SynthConfig, *, canaries: int = 500, seed: int | None = None):
    """Privacy audit of this config: train a fresh generator on the private data plus a coin-chosen
    half of ``canaries`` random records, score every canary, bound ε from below (evaluation.audit).
    The result goes to ``<output.dir>/audit.json``."""
    import numpy as np

    from evaluation.audit import run_audit
    from trainer.errors import ConfigError

    from .canaries import make_canaries

    if config.spec.privacy_unit != "example":
        raise ConfigError("the audit supports example-level privacy only (each canary is one example)")
    if canaries < 20:
        raise ConfigError(f"the audit needs at least 20 canaries to say anything, got {canaries}")
    frame = load_private(config)
    generator = RecordGenerator(config.spec, config.model)
    rng = np.random.default_rng(seed)
    canary_examples = generator.examples(make_canaries(config.spec, canaries, rng))
    # the audited model is never exported: a seed here only makes the audit reproducible
    train_seed = seed if seed is not None else config.train.seed
    train_config = dataclasses.replace(config.train, seed=train_seed, insecure_seed=train_seed is not None)
    result = run_audit(generator.model, generator.examples(frame), canary_examples, train_config,
                       pad_token_id=generator.tokenizer.pad_token_id, seed=seed)
    atomic_write_text(Path(config.output.dir) / "audit.json", json.dumps(result.to_dict(), indent=2, default=str))
    return result
