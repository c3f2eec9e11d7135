"""Documents by Private Evolution (``evolve.road = "evolve"`` or ``"fine-tune+evolve"`` in a text run).

The floor's loop (synth/evolution) with the text room's generator: the public model (``evolve``) or
the DP-fine-tuned one (``fine-tune+evolve``) writes candidate documents under their labels' prompt;
the variation keeps a parent's labels and opening words and writes the rest
(``TextGenerator.vary``); the offline MiniLM embeds the text (the private documents' embeddings are
cached in the run folder).  With labels, as Aug-PE: a private document votes among the candidates of
its own labels, and each label combination keeps its share of the population (drawn from the label
distribution: declared weights or the DP histogram the run paid for), so one histogram per
iteration covers every label (each document still casts one vote of norm 1).  The final population
is the synthetic corpus, kept in ``<run>/evolution`` so that an interrupted run resumes at its last
iteration and `dpsynth generate` re-exports it without another release.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from trainer import PrivacyLedger
from trainer.errors import ConfigError
from trainer.seeds import numpy_rng

from ..conditioning import plain_value

STAGE = "evolve:histogram"


def label_group(document: dict, label_names: list[str]) -> str:
    """A document's labels as one hashable key (its group in the votes and the resampling)."""
    return json.dumps([plain_value(document[n]) for n in label_names], default=str)


def plain_documents(frame: pd.DataFrame, label_names: list[str], text: str) -> list[dict]:
    return [{**{n: plain_value(r[n]) for n in label_names}, text: str(r[text])} for r in frame.to_dict("records")]


def evolve_documents(config, generator, frame: pd.DataFrame, users: list | None, ledger: PrivacyLedger, *,
                     progress: bool) -> pd.DataFrame:
    """The synthetic documents: PE's final population (``generate.n`` of them), paid for in ``ledger``."""
    from evaluation import Encoder

    from ..evolution import calibrate_sigma, evolve
    from ..run_folder import candidate_settings

    if config.train.target_epsilon is None:
        raise ConfigError("evolve needs train.target_epsilon: the histograms' σ is calibrated to what is left of it")
    spec, g = generator.spec, config.generate
    settings = config.evolve.settings(g.n)
    run_dir = Path(config.output.dir)
    encoder = Encoder(cache_dir=run_dir / "evolution" / "embeddings")
    names = spec.label_names
    private_docs = plain_documents(frame, names, spec.text)
    private = encoder.encode_dataset([d[spec.text] for d in private_docs])
    sigma = calibrate_sigma(config.train.target_epsilon, settings.iterations, ledger)

    def random_api(n: int) -> list[dict]:
        sampled, _ = generator.sample(n, batch_size=g.batch_size, max_new_tokens=g.max_new_tokens,
                                      temperature=g.temperature, top_p=g.top_p, seed=g.seed, progress=progress,
                                      max_cache_gb=g.max_cache_gb, dtype=g.dtype)
        return plain_documents(sampled, names, spec.text)

    def variation_api(items: list[dict], rng: np.random.Generator) -> list[dict]:
        return generator.vary(items, rng, batch_size=g.batch_size, max_new_tokens=g.max_new_tokens,
                              temperature=config.evolve.variation_temperature, top_p=g.top_p, progress=progress,
                              max_cache_gb=g.max_cache_gb, dtype=g.dtype)

    def embed(items: list[dict]) -> np.ndarray:
        return encoder.encode_dataset([d[spec.text] for d in items])

    grouped = {"group_of": lambda d: label_group(d, names),
               "private_groups": [label_group(d, names) for d in private_docs]} if names else {}
    result = evolve(private, random_api=random_api, variation_api=variation_api, embed=embed, settings=settings,
                    sigma=sigma, ledger=ledger, rng=numpy_rng(config.train.seed, "evolve"), units=users,
                    stage=STAGE, state_dir=run_dir / "evolution", progress=progress,
                    candidates=candidate_settings(config), **grouped)
    if result.empty_histograms:
        print(f"dpsynth: {result.empty_histograms} of {result.iterations} noisy histograms had no count above the "
              "threshold (the population was kept as it was): lower evolve.threshold_sigmas or raise ε",
              file=sys.stderr)
    votes = ", ".join(f"{v:.0%}" for v in result.votes_kept)
    print(f"dpsynth: Private Evolution: {result.iterations} histograms at σ = {sigma:.3g}; share of votes kept above "
          f"the threshold per iteration (DP): {votes}", file=sys.stderr)
    return documents_frame(result.items, names, spec.text)


def documents_frame(items: list[dict], label_names: list[str], text: str) -> pd.DataFrame:
    frame = pd.DataFrame(items, columns=[*label_names, text])
    frame[text] = frame[text].astype("string")
    return frame


def evolution_summary(config, ledger: PrivacyLedger) -> str:
    from ..evolution import pool_summary

    iterations = sum(e.steps for e in ledger.events if e.stage == STAGE)
    sigma = next((e.noise_multiplier for e in ledger.events if e.stage == STAGE), math.nan)
    return (f"Private Evolution: the population of {config.generate.n} documents after {iterations} noisy "
            f"nearest-neighbour histograms (σ = {sigma:.3g} votes, threshold {config.evolve.threshold_sigmas:g} σ, "
            f"k = {config.evolve.k}; a document votes among candidates with its own labels), written and varied "
            "(opening kept, the rest rewritten) by the "
            + ("DP-fine-tuned model" if config.evolve.road == "fine-tune+evolve" else "public model")
            + pool_summary(config.evolve.settings(config.generate.n)))


def saved_population(config) -> pd.DataFrame:
    """The final population a finished run kept (re-exported by `dpsynth generate`: no new release)."""
    from ..evolution.evolve import finished_population

    spec = config.text
    items = finished_population(Path(config.output.dir) / "evolution", config.evolve.iterations, config.generate.n,
                                "documents")
    return documents_frame(items, spec.label_names, spec.text)
