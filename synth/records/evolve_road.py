"""Records by Private Evolution (``evolve.road = "evolve"`` or ``"fine-tune+evolve"``).

The floor's loop (synth/evolution) with the records room's generator as its random and variation
model: the public model (``evolve``) or the DP-fine-tuned one (``fine-tune+evolve``, the budget
split by ``evolve.budget_share``) writes candidates under the record grammar, the offline MiniLM
embeds them as their field values (the private records' embeddings are computed once and cached in
the run folder), and every private unit votes.  The final population is the synthetic data; it is
kept in ``<run>/evolution`` so that an interrupted run resumes at its last iteration and
`dpsynth generate` re-exports it without another release.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from trainer import PrivacyLedger
from trainer.seeds import numpy_rng

from ..conditioning import plain_value
from ..spec import DatasetSpec
from .serialize import texts_to_frame

STAGE = "evolve:histogram"


def record_contents(records: list[dict], spec: DatasetSpec) -> list[str]:
    """A record as the evaluator embeds it (``evaluation.records.content_text``: its field values, one
    per line; keys and quotes are the same in every record and would only dilute the embedding)."""
    from evaluation.records import content_text

    return [content_text(r, spec.names) for r in records]


def field_block(records: list[dict], spec: DatasetSpec, weight: float) -> np.ndarray:
    """The non-text fields as vectors whose dot product is their agreement, for the votes to see them
    (MiniLM hardly tells a "1" from a "5" in a record's text).  Per field a unit vector: a category
    one-hot over its public list; a number on a quarter circle by its place in the public [min, max]
    (two values' dot product is cos(π/2 · their distance)); a missing value its own direction.
    Fields without a public domain are left out.  Scaled so the block's norm is ``weight``: beside a
    unit text embedding, cosine similarity weighs the fields' mean agreement by weight² : 1."""
    parts = []
    for col in spec.columns:
        if col.type == "categorical" and col.categories:
            index = {c: i for i, c in enumerate(col.categories)}
            block = np.zeros((len(records), len(col.categories) + 1))
            for row, record in enumerate(records):
                v = record[col.name]
                block[row, index.get(str(v), len(col.categories)) if v is not None else len(col.categories)] = 1.0
        elif col.type in ("integer", "float") and col.min is not None and col.max is not None:
            block = np.zeros((len(records), 3))
            width = max(col.max - col.min, 1e-12)
            for row, record in enumerate(records):
                v = record[col.name]
                if v is None:
                    block[row, 2] = 1.0
                else:
                    angle = np.pi / 2 * min(max((float(v) - col.min) / width, 0.0), 1.0)
                    block[row, :2] = np.cos(angle), np.sin(angle)
        else:
            continue
        parts.append(block)
    if not parts or weight == 0:
        return np.zeros((len(records), 0))
    return np.concatenate(parts, axis=1) * (weight / np.sqrt(len(parts)))


def plain_records(frame: pd.DataFrame, spec: DatasetSpec) -> list[dict]:
    return [{c: plain_value(r[c]) for c in spec.names} for r in frame.to_dict("records")]


def finetune_target(config, ledger: PrivacyLedger) -> float:
    """fine-tune+evolve: the ε the DP fine-tuning may reach (``evolve.budget_share`` of what is left)."""
    from ..evolution import finetune_target as share_of_what_is_left

    return share_of_what_is_left(config.train.target_epsilon, config.evolve.budget_share, ledger)


def evolve_records(config, generator, frame: pd.DataFrame, units: list | None, ledger: PrivacyLedger, *,
                   progress: bool) -> pd.DataFrame:
    """The synthetic records: PE's final population (``generate.n`` of them), paid for in ``ledger``."""
    from evaluation import Encoder
    from trainer.errors import ConfigError

    from ..evolution import calibrate_sigma, evolve
    from ..pipeline import sample_until
    from ..run_folder import candidate_settings

    if config.train.target_epsilon is None:
        raise ConfigError("evolve needs train.target_epsilon: the histograms' σ is calibrated to what is left of it")
    settings = config.evolve.settings(config.generate.n)
    run_dir = Path(config.output.dir)
    encoder = Encoder(cache_dir=run_dir / "evolution" / "embeddings")
    spec = generator.spec
    weight = config.evolve.field_weight

    def embed(items: list[dict]) -> np.ndarray:
        text = encoder.encode_dataset(record_contents(items, spec))
        return np.concatenate([text, field_block(items, spec, weight)], axis=1) if weight else text

    private = embed(plain_records(frame, spec))
    sigma = calibrate_sigma(config.train.target_epsilon, settings.iterations, ledger)
    g = config.generate
    counts = {"kept_parents": 0}

    def random_api(n: int) -> list[dict]:
        def draw(count, seed):
            return generator.sample(count, batch_size=g.batch_size, temperature=g.temperature, top_p=g.top_p,
                                    seed=seed, progress=progress, max_cache_gb=g.max_cache_gb, dtype=g.dtype,
                                    field_temperature=g.field_temperature)

        sampled, _ = sample_until(draw, n, g.seed)
        return plain_records(sampled, spec)

    def variation_api(items: list[dict], rng: np.random.Generator) -> list[dict]:
        children, kept = generator.vary(items, batch_size=g.batch_size, temperature=config.evolve.variation_temperature,
                                        top_p=g.top_p, seed=int(rng.integers(1 << 31)), progress=progress,
                                        mode=config.evolve.record_variation,
                                        fields_changed=config.evolve.fields_changed, max_cache_gb=g.max_cache_gb, dtype=g.dtype)
        counts["kept_parents"] += kept
        return children

    result = evolve(private, random_api=random_api, variation_api=variation_api, embed=embed, settings=settings,
                    sigma=sigma, ledger=ledger, rng=numpy_rng(config.train.seed, "evolve"), units=units,
                    stage=STAGE, state_dir=run_dir / "evolution", progress=progress,
                    candidates=candidate_settings(config))
    if result.empty_histograms:
        print(f"dpsynth: {result.empty_histograms} of {result.iterations} noisy histograms had no count above the "
              "threshold (the population was kept as it was): lower evolve.threshold_sigmas or raise ε",
              file=sys.stderr)
    if counts["kept_parents"]:
        print(f"dpsynth: {counts['kept_parents']} variations did not close or parse and kept their parent",
              file=sys.stderr)
    votes = ", ".join(f"{v:.0%}" for v in result.votes_kept)
    print(f"dpsynth: Private Evolution: {result.iterations} histograms at σ = {sigma:.3g}; share of votes kept above "
          f"the threshold per iteration (DP): {votes}", file=sys.stderr)
    return texts_to_frame(result.items, spec)


def evolution_summary(config, ledger: PrivacyLedger) -> str:
    from ..evolution import pool_summary

    iterations = sum(e.steps for e in ledger.events if e.stage == STAGE)
    sigma = next((e.noise_multiplier for e in ledger.events if e.stage == STAGE), math.nan)
    return (f"Private Evolution: the population of {config.generate.n} records after {iterations} noisy "
            f"nearest-neighbour histograms (σ = {sigma:.3g} votes, threshold {config.evolve.threshold_sigmas:g} σ, "
            f"k = {config.evolve.k}), candidates written under the record grammar by the "
            + ("DP-fine-tuned model" if config.evolve.road == "fine-tune+evolve" else "public model")
            + (f"; a variation writes each field anew with chance {config.evolve.fields_changed:g}, the others kept"
               if config.evolve.record_variation == "fields" else "; a variation rewrites the whole record")
            + (f"; votes on the field values' text embedding with the non-text fields at weight "
               f"{config.evolve.field_weight:g}" if config.evolve.field_weight else "")
            + pool_summary(config.evolve.settings(config.generate.n)))


def saved_population(config, spec: DatasetSpec) -> pd.DataFrame:
    """The final population a finished `evolve` run kept (re-exported by `dpsynth generate`: no new release)."""
    from ..evolution.evolve import finished_population

    return texts_to_frame(finished_population(Path(config.output.dir) / "evolution", config.evolve.iterations,
                                              config.generate.n, "records"), spec)
