"""The Python front door: a DataFrame in, a private generator out, no TOML needed.

    from synth import fit
    gen = fit(df, epsilon=4)            # the spec drafted from df's schema, every domain paid for with DP
    synthetic = gen.sample(1000)        # a DataFrame
    gen.card, gen.ledger                # the guarantee, stage by stage
    gen.save("my_generator"); gen = synth.load("my_generator")

``fit`` builds the same run config the CLI reads and calls the same pipeline (spec checks, domain
estimates, ledger, checkpoints that resume), with the private rows handed over in memory: the
DataFrame is read once, never written anywhere.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

SECTION_ARGUMENTS = ("data", "model", "train", "generate", "columns", "output")


def _spec_table(spec, frame) -> tuple[dict, bool]:
    """The [spec] table for ``spec`` (None: drafted from the frame's schema), and whether it was drafted."""
    from .spec import DatasetSpec

    if spec is None:
        if frame is None:
            from trainer.errors import ConfigError

            raise ConfigError("give a spec, or a DataFrame to draft one from")
        from .drafting import draft_from_frame

        draft = draft_from_frame(frame)
        if draft.left_out:
            print(f"dpsynth: the drafted spec leaves out {draft.left_out} (identifier-like columns)", file=sys.stderr)
        return draft.spec_dict(), True
    if isinstance(spec, (str, Path)):
        spec = DatasetSpec.from_file(spec)
    if isinstance(spec, DatasetSpec):
        return dataclasses.asdict(spec), False
    if isinstance(spec, dict):
        return dict(spec), False
    raise TypeError(f"spec must be a dict (the [spec] table), a DatasetSpec, a spec file's path or None, "
                    f"got {type(spec).__name__}")


def build_fit_config(data, spec=None, *, epsilon: float | None = 4.0, delta: float | None = None,
                     method: str = "auto", output_dir: str | Path | None = None, overwrite: bool = False,
                     **sections: dict[str, Any]):
    """(SynthConfig, the frame or None, schema_inferred) for ``fit``'s arguments."""
    import pandas as pd

    from trainer.errors import ConfigError

    from .run_config import build_config

    unknown = [k for k in sections if k not in SECTION_ARGUMENTS]
    if unknown:
        from trainer.errors import nearest_key_hint

        raise ConfigError(f"fit() has no argument {unknown[0]!r}{nearest_key_hint(unknown[0], list(SECTION_ARGUMENTS))}"
                          "; sections are given as dicts, e.g. train={'steps': 20}")
    frame = data if isinstance(data, pd.DataFrame) else None
    if frame is None and not isinstance(data, (str, Path)):
        raise TypeError(f"data must be a pandas DataFrame or a data file's path, got {type(data).__name__}")
    if frame is not None and (len(frame) == 0 or len(frame.columns) == 0):
        raise ConfigError("the DataFrame has no rows or no columns")
    if frame is None and spec is None:
        from .loading import load_table

        frame_for_draft = load_table(data)
    else:
        frame_for_draft = frame
    spec_table, inferred = _spec_table(spec, frame_for_draft)
    raw: dict[str, Any] = {name: dict(values) for name, values in sections.items()}
    raw["spec"] = spec_table
    raw.setdefault("data", {})["path"] = "DataFrame (in memory)" if frame is not None else str(data)
    train = raw.setdefault("train", {})
    if epsilon is not None and not {"target_epsilon", "noise_multiplier", "non_private"} & set(train):
        train["target_epsilon"] = float(epsilon)
    if delta is not None:
        train["delta"] = float(delta)
    if method != "auto":
        raw.setdefault("columns", {})["model"] = method
    elif "model" not in raw.get("columns", {}):
        has_text = any(c.get("type", "text") == "text" for c in spec_table["columns"]
                       if isinstance(c, dict))
        raw.setdefault("columns", {})["model"] = "lm" if has_text else "aim"
    output = raw.setdefault("output", {})
    if output_dir is not None:
        output["dir"] = str(output_dir)
    elif "dir" not in output:
        output["dir"] = tempfile.mkdtemp(prefix="dpsynth-fit-")
        print(f"dpsynth: run folder {output['dir']} (checkpoints of a model trained on the private data: pass "
              "output_dir= to keep it somewhere known, delete it when done)", file=sys.stderr)
    if overwrite:
        output["overwrite"] = True
    return build_config(raw), frame, inferred


def fit(data, spec=None, *, epsilon: float | None = 4.0, delta: float | None = None, method: str = "auto",
        output_dir: str | Path | None = None, overwrite: bool = False, progress: bool = True,
        dry_run: bool = False, **sections: dict[str, Any]):
    """DP-train a generator on ``data`` (a DataFrame, or a .csv / .jsonl / .parquet path).

    ``spec``: the [spec] table as a dict, a DatasetSpec, a spec file, or None to draft it from the
    data's schema (column kinds; every domain then a DP estimate paid from the budget, and the card
    lists the schema as public).  ``epsilon``: the target ε of the whole run (every stage composed).
    ``method``: "auto" (the DP marginal model for tables without text, the DP LM otherwise), "lm",
    "aim" or "mst".  ``output_dir``: the run folder (checkpoints: a second call resumes; default a
    fresh temporary folder).  Other sections of the run config as dicts: ``train={"steps": 20}``,
    ``model={...}``, ``generate={...}``, ``columns={...}``, ``data={"invalid_rows": "clip"}``.
    ``dry_run``: return the plan (stages, σ, q, steps, ε) without training.
    """
    config, frame, inferred = build_fit_config(data, spec, epsilon=epsilon, delta=delta, method=method,
                                               output_dir=output_dir, overwrite=overwrite, **sections)
    if config.kind != "records":
        from trainer.errors import ConfigError

        raise ConfigError("fit() makes tables (records); text corpora, images and albums run from a config: "
                          "`dpsynth run CONFIG`")
    if dry_run:
        from .planning import plan

        return plan(config, frame=frame)
    from . import pipeline

    generator, private = pipeline.train(config, progress=progress, frame=frame)
    return Synthesizer(generator, config, schema_inferred=inferred,
                       training_texts=pipeline.training_texts(private, generator.spec))


class Synthesizer:
    """A trained private generator: ``sample`` as often as you like (post-processing costs no ε).

    After each ``sample``, ``last_private_report`` counts the rows that copy a training row exactly:
    computed from the private rows, so it is NOT differentially private (look, do not publish).  A
    Synthesizer made by ``fit`` holds the training rows' serialised texts in memory for it; one read
    back by ``load`` has no private rows, and its report says so."""

    def __init__(self, generator, config, *, schema_inferred: bool = False, card: dict | None = None,
                 training_texts: frozenset[str] | None = None):
        self.generator = generator
        self.config = config
        self._card = card
        self._schema_inferred = schema_inferred
        self._training_texts = training_texts
        self.last_private_report: dict | None = None

    @property
    def ledger(self):
        return self.generator.ledger

    @property
    def epsilon(self) -> float:
        return self.card["privacy"]["epsilon"]

    @property
    def delta(self) -> float:
        return self.ledger.delta

    @property
    def card(self) -> dict:
        """The privacy card (as `dpsynth.json` holds it, without the generation counts)."""
        if self._card is None:
            from .card import card_base

            self._card = card_base(self.config, self.generator, schema_inferred=self._schema_inferred)
        return self._card

    def sample(self, n: int, *, seed: int | None = None, temperature: float | None = None,
               top_p: float | None = None, batch_size: int | None = None, progress: bool = False,
               field_temperature: dict[str, float] | None = None):
        """``n`` synthetic rows as a DataFrame (rows the grammar's token budget or the spec rejected are
        drawn again, see ``pipeline.sample_until``).  ``temperature``, ``top_p`` and ``field_temperature``
        (e.g. ``{"product_name": 0.4}``) default to the config's ``generate`` settings."""
        from .pipeline import sample_until

        g = self.config.generate

        def draw(count: int, draw_seed: int | None):
            return self.generator.sample(count, batch_size=batch_size or g.batch_size,
                                         temperature=g.temperature if temperature is None else temperature,
                                         top_p=g.top_p if top_p is None else top_p, seed=draw_seed, progress=progress,
                                         max_cache_gb=g.max_cache_gb, dtype=g.dtype,
                                         field_temperature=g.field_temperature if field_temperature is None
                                         else field_temperature)

        frame, self.last_sample_stats = sample_until(draw, int(n), seed)
        self.last_private_report = self._private_report(frame)
        return frame

    def _private_report(self, frame) -> dict:
        note = "NOT differentially private: computed from the private rows, do not publish"
        if self._training_texts is None:
            return {"exact_copies_of_training_rows": None,
                    "note": "not computed: this Synthesizer was loaded from disk and holds no private rows"}
        from .pipeline import count_exact_copies

        copies = count_exact_copies(self._training_texts, frame, self.generator.spec)
        if copies:
            print(f"dpsynth: {copies} of the {len(frame)} sampled rows copy a training row exactly "
                  "(see last_private_report; not DP, do not publish the count)", file=sys.stderr)
        return {"exact_copies_of_training_rows": copies, "sampled": len(frame), "note": note}

    def export(self, directory: str | Path, n: int, *, fmt: str = "csv", seed: int | None = None,
               overwrite: bool = False) -> Path:
        """A shareable folder: ``n`` synthetic rows with the card (README.md + dpsynth.json)."""
        from .export import export

        frame = self.sample(n, seed=seed)
        stats = self.last_sample_stats
        rejected = stats.extra.get("unparseable_by_spec", 0)
        card = {**self.card, "seed": seed,
                "generation": {"requested": n, "emitted": len(frame), "hit_limit": stats.hit_limit,
                               "rejected_by_spec": rejected, "redrawn": stats.hit_limit + rejected}}
        return export(frame, directory, fmt=fmt, card=card, overwrite=overwrite)

    def save(self, directory: str | Path) -> Path:
        """The generator folder (``save_pretrained`` layout) plus ``card.json``; ``load`` reads it back."""
        from trainer.io import atomic_write_text

        directory = Path(directory)
        self.generator.save_pretrained(directory)
        atomic_write_text(directory / "card.json", json.dumps(
            {"card": self.card, "generate": dataclasses.asdict(self.config.generate),
             "train": {"max_examples_per_user": self.config.train.max_examples_per_user}}, indent=2, default=str))
        return directory

    def __repr__(self) -> str:
        p = self.card["privacy"]
        return (f"Synthesizer({len(self.generator.spec.columns)} columns, ε = {p['epsilon']:.3g}, δ = {p['delta']:.2g}, "
                f"unit = {p['privacy_unit']}, model = {self.card['model']!r})")


def load(directory: str | Path) -> Synthesizer:
    """A Synthesizer saved by ``Synthesizer.save`` (or any saved records generator folder)."""
    from trainer.errors import ConfigError

    from .pipeline import _generator_class
    from .run_config import GenerateSection, build_config
    from .run_folder import load_saved_generator

    directory = Path(directory)
    if not (directory / "dpsynth_config.json").is_file():
        raise ConfigError(f"{directory} is not a saved dpsynth generator (no dpsynth_config.json)")
    generator = load_saved_generator(directory, _generator_class(directory))
    saved = json.loads((directory / "card.json").read_text()) if (directory / "card.json").is_file() else {}
    config = build_config({"data": {"path": str(directory)}, "spec": dataclasses.asdict(generator.spec),
                           "output": {"dir": str(directory)}})
    config.generate = GenerateSection(**saved.get("generate", {}))
    return Synthesizer(generator, config, card=saved.get("card"))
