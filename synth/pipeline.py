"""train -> generate -> export, the library functions behind `dpsynth run`.

The run folder ``<output.dir>`` holds checkpoints (resumable), the trained
generator with its ledger, and a private report; ``<output.dir>/export`` is the
shareable synthetic data with its card.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd

from trainer import PrivacyLedger
from trainer.io import atomic_write_text

from .export import export, privacy_block
from .loading import load_table, typed_frame
from .records.generator import RecordGenerator
from .records.serialize import frame_to_texts
from .run_config import SynthConfig


def load_private(config: SynthConfig) -> pd.DataFrame:
    return typed_frame(load_table(config.data.path), config.spec, source=config.data.path)


def train(config: SynthConfig, *, progress: bool = True) -> tuple[RecordGenerator, pd.DataFrame]:
    """DP-train a generator on the private data (resuming from checkpoints in the run folder)."""
    frame = load_private(config)
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
        frame = frame.drop(index=frame.index[bad])
    units = None
    if config.spec.privacy_unit != "example":
        units = frame[config.spec.privacy_unit].tolist()
    run_dir = Path(config.output.dir)
    train_config = dataclasses.replace(config.train, progress=progress and config.train.progress)
    ledger = PrivacyLedger(delta=config.train.resolve_delta(len(set(units)) if units else len(frame)),
                           accountant=config.train.accountant, privacy_unit=config.train.privacy_unit,
                           declared_public=config.spec.public_facts())
    spec = config.spec
    if any(c.estimate for c in spec.columns):
        from .domains import apply_estimates

        spec = apply_estimates(spec, domain_estimates(config, frame, units, ledger))
    generator = RecordGenerator(spec, config.model, grammar=grammar)
    if config.spec.conditioning:
        generator.conditioning = conditioning_distribution(config, frame, units, ledger)
    generator.fit(frame, train_config, units=units, output_dir=run_dir / "checkpoints", ledger=ledger)
    generator.save_pretrained(run_dir / "generator")
    return generator, frame


# the share of δ that partition selection of category lists may spend (split over those columns)
SELECTION_DELTA_SHARE = 0.1


def domain_estimates(config: SynthConfig, frame: pd.DataFrame, units: list | None, ledger: PrivacyLedger):
    """DP estimates of the domains of ``estimate = true`` columns, each paid for in ``ledger``.
    Kept in the run folder so that a resumed run re-uses them instead of releasing them again."""
    from trainer.errors import ConfigError

    from .domains import DomainEstimate, estimate_domains

    spec = config.spec
    wanted = [c.name for c in spec.columns if c.estimate]
    n_categorical = sum(spec.column(c).type == "categorical" for c in wanted)
    selection_delta = ledger.delta * SELECTION_DELTA_SHARE / max(1, n_categorical)
    saved = Path(config.output.dir) / "domains.json"
    if saved.is_file():
        estimates = [DomainEstimate(**d) for d in json.loads(saved.read_text())]
        if [e.column for e in estimates] != wanted or any(e.noise_multiplier != spec.estimate_noise for e in estimates):
            raise ConfigError(f"{saved} holds estimates of {[e.column for e in estimates]}; this config asks for "
                              f"{wanted} with σ={spec.estimate_noise}: pass --overwrite to start afresh")
    else:
        estimates = estimate_domains(frame, spec, noise_multiplier=spec.estimate_noise,
                                     selection_delta=selection_delta, units=units, seed=config.train.seed)
        atomic_write_text(saved, json.dumps([e.to_dict() for e in estimates], indent=2))
    for e in estimates:
        ledger.record(f"domain:{e.column}", noise_multiplier=e.noise_multiplier, sample_rate=1.0, steps=1,
                      extra_delta=e.selection_delta, estimate=e.kind, result=e.describe())
    return estimates


def conditioning_distribution(config: SynthConfig, frame: pd.DataFrame, units: list | None, ledger: PrivacyLedger):
    """Declared public weights, or a DP histogram paid for in ``ledger`` (user level: of one row per
    user, so a user moves one count).  The histogram is kept in the run folder so that a resumed run
    re-uses it (a fresh one would be a second, unpaid release)."""
    from trainer.errors import ConfigError

    from .conditioning import ConditioningDistribution, declared, dp_histogram

    spec = config.spec
    if spec.conditioning_weights is not None:
        return declared(spec)
    sigma = config.generate.conditioning_noise
    saved = Path(config.output.dir) / "conditioning.json"
    if saved.is_file():
        dist = ConditioningDistribution.from_dict(json.loads(saved.read_text()))
        if dist.columns != list(spec.conditioning) or dist.noise_multiplier != sigma:
            raise ConfigError(f"{saved} was measured for columns {dist.columns} with σ={dist.noise_multiplier}; "
                              "this config differs: pass --overwrite to start afresh")
    else:
        import numpy as np

        from .domains import one_row_per_unit

        rows = one_row_per_unit(frame, units, np.random.default_rng(config.train.seed))  # a user moves one count
        dist = dp_histogram(rows, spec, sigma, seed=config.train.seed)
        atomic_write_text(saved, json.dumps(dist.to_dict(), indent=2))
    ledger.record("conditioning_histogram", noise_multiplier=sigma, sample_rate=1.0, steps=1,
                  columns=list(spec.conditioning))
    return dist


def generate_and_export(config: SynthConfig, generator: RecordGenerator, private: pd.DataFrame | None, *,
                        progress: bool = True) -> dict:
    g = config.generate
    synthetic, stats = generator.sample(g.n, batch_size=g.batch_size, temperature=g.temperature, top_p=g.top_p,
                                        seed=g.seed, progress=progress)
    ledger = generator.ledger
    card = {
        "privacy": privacy_block(ledger, max_examples_per_user=config.train.max_examples_per_user
                                 if config.train.privacy_unit == "user" else None),
        "declared_public": ledger.declared_public,
        "paid_for": [e.stage for e in ledger.events],
        "estimated_with_dp": [e.details["result"] for e in ledger.events if e.stage.startswith("domain:")],
        "model": generator.model_description,
        "spec": {"columns": [c.name for c in config.spec.columns], "serialization": config.spec.serialization},
        "generation": {"requested": stats.requested, "emitted": stats.emitted, "hit_limit": stats.hit_limit,
                       "rejected_by_spec": stats.extra.get("unparseable_by_spec", 0),
                       "temperature": g.temperature, "top_p": g.top_p},
        "seed": g.seed,
    }
    if generator.conditioning is not None:
        card["conditioning"] = generator.conditioning.to_dict()
    run_dir = Path(config.output.dir)
    out = export(synthetic, run_dir / "export", fmt=config.output.format, card=card, overwrite=config.output.overwrite)
    # not DP: computed from the private rows; stays in the run folder, out of the export
    if private is None:
        private = load_private(config)
    private_texts = set(frame_to_texts(private, config.spec))
    dupes = sum(t in private_texts for t in frame_to_texts(synthetic, config.spec))
    report = {"exact_copies_of_training_rows": dupes, "emitted": stats.emitted, "hit_limit": stats.hit_limit,
              "tokens_per_second": stats.tokens_per_second, "note": "NOT differentially private: do not publish"}
    atomic_write_text(run_dir / "private_report.json", json.dumps(report, indent=2, sort_keys=True))
    return {"export": str(out), "epsilon": card["privacy"]["epsilon"], "delta": ledger.delta, "rows": len(synthetic),
            "report": report, "sample": synthetic.head(5), "synthetic": synthetic, "card": card}


def generate(config: SynthConfig, *, progress: bool = True) -> dict:
    """Sample and export from the generator a previous ``train`` saved in the run folder."""
    from trainer.errors import ConfigError

    saved = Path(config.output.dir) / "generator"
    if not saved.is_dir():
        raise ConfigError(f"no trained generator in {saved}; run `dpsynth train` with this config first")
    generator = RecordGenerator.from_pretrained(saved)
    if generator.ledger is None:
        raise ConfigError(f"{saved} has no privacy ledger: refusing to export data without a stated guarantee")
    return generate_and_export(config, generator, None, progress=progress)


RUN_ARTEFACTS = ("checkpoints", "generator", "export", "private_report.json", "evaluation", "conditioning.json",
                 "domains.json")


def run(config: SynthConfig, *, progress: bool = True) -> dict:
    """Train, generate, export.  Checkpoints of an interrupted run are resumed; ``overwrite``
    starts afresh (it removes this run's own artefacts, nothing else in the folder)."""
    run_dir = Path(config.output.dir)
    if (run_dir / "export").exists() and not config.output.overwrite:
        from trainer.errors import ConfigError

        raise ConfigError(f"output folder {run_dir / 'export'} exists; pass --overwrite to replace it")
    if config.output.overwrite:
        import shutil

        for name in RUN_ARTEFACTS:
            target = run_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    generator, private = train(config, progress=progress)
    result = generate_and_export(config, generator, private, progress=progress)
    if config.evaluation is not None:
        result["evaluation"] = evaluate_run(config, generator.grammar, private, result["synthetic"], result["card"])
    return result


def evaluate_run(config: SynthConfig, grammar_text: str, private: pd.DataFrame, synthetic: pd.DataFrame,
                 card: dict):
    """Score the synthetic records against the private ones; the report (not DP) goes to
    ``<output.dir>/evaluation``, never into the export."""
    from evaluation import Encoder, EvalSpec, RecordGrammar, evaluate

    spec = EvalSpec.from_dict({"spec": {"columns": config.spec.names, "serialization": config.spec.serialization},
                               "evaluation": config.evaluation})
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
