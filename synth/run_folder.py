"""What every pipeline shares: the run folder (one runner at a time, overwrite) and the releases
that are paid once and kept there (DP domain estimates, the conditioning histogram), so that a
resumed run re-uses them instead of paying for them again."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

import pandas as pd

from trainer import PrivacyLedger
from trainer.io import atomic_write_text, folder_lock

from .run_config import SynthConfig

RUN_ARTEFACTS = ("checkpoints", "pretrain_checkpoints", "generator", "generation", "export", "private_report.json", "evaluation",
                 "conditioning.json", "domains.json", "data_report.json", "column_model", "evolution")


def refuse_existing_export(config: SynthConfig) -> None:
    """`run` never replaces an export silently: it needs --overwrite."""
    from trainer.errors import ConfigError

    export = Path(config.output.dir) / "export"
    if export.exists() and not config.output.overwrite:
        raise ConfigError(f"output folder {export} exists; pass --overwrite to replace it")


def saved_generator_path(config: SynthConfig) -> Path:
    """Where a previous `train` saved the generator (checked before the run folder is locked or made)."""
    from trainer.errors import ConfigError

    saved = Path(config.output.dir) / "generator"
    if not saved.is_dir():
        raise ConfigError(f"no trained generator in {saved}; run `dpsynth train` with this config first")
    return saved


def load_saved_generator(saved: Path, generator_cls):
    """The saved generator, refused without its privacy ledger."""
    from trainer.errors import ConfigError

    generator = generator_cls.from_pretrained(saved)
    if generator.ledger is None:
        raise ConfigError(f"{saved} has no privacy ledger: refusing to export data without a stated guarantee")
    return generator


@contextlib.contextmanager
def run_folder(config: SynthConfig, *, fresh: bool = True):
    """Check the run folder can be written, hold its lock, and (``overwrite``, ``fresh``) clear this
    run's own artefacts first: a second runner on the same folder is refused."""
    from trainer.errors import ConfigError

    from .ranks import check_supported, is_worker, wait_for_gate

    check_supported(config)  # under torchrun: a road that cannot train across ranks stops every rank here
    run_dir = Path(config.output.dir)
    if is_worker():  # torchrun: rank 0 holds and clears the folder; this rank reads what it wrote
        wait_for_gate()
        yield run_dir
        return
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"output.dir {run_dir}: cannot write there ({err.strerror or err}); choose another "
                          "folder") from None
    with folder_lock(run_dir):
        if fresh and config.output.overwrite:
            for name in RUN_ARTEFACTS:
                target = run_dir / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        yield run_dir


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
        from .ranks import refuse_release_on_worker

        refuse_release_on_worker(saved)
        estimates = estimate_domains(frame, spec, noise_multiplier=spec.estimate_noise,
                                     selection_delta=selection_delta, units=units, seed=config.train.seed)
        atomic_write_text(saved, json.dumps([e.to_dict() for e in estimates], indent=2))
    for e in estimates:
        ledger.record(f"domain:{e.column}", noise_multiplier=e.noise_multiplier, sample_rate=1.0, steps=1,
                      extra_delta=e.selection_delta, estimate=e.kind, result=e.describe(),
                      nullable=spec.column(e.column).nullable, inside_count=e.inside_count)
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
        from trainer.seeds import numpy_rng

        from .domains import one_row_per_unit
        from .ranks import refuse_release_on_worker

        refuse_release_on_worker(saved)

        rows = one_row_per_unit(frame, units, numpy_rng(config.train.seed, "conditioning_rows"))  # a user moves one count
        dist = dp_histogram(rows, spec, sigma, seed=config.train.seed)
        atomic_write_text(saved, json.dumps(dist.to_dict(), indent=2))
    ledger.record("conditioning_histogram", noise_multiplier=sigma, sample_rate=1.0, steps=1,
                  columns=list(spec.conditioning))
    return dist


# records / documents sampled per saved part of a resumable generation
GENERATION_PART = 100


def resumable_sample(config: SynthConfig, sample, *, fingerprint: dict, with_start: bool = False
                     ) -> tuple[pd.DataFrame, object]:
    """``config.generate.n`` synthetic rows from ``sample(count, seed) -> (frame, SampleStats)``, written
    as they come in parts of GENERATION_PART to ``<run>/generation/``: an interrupted generation resumes
    with the next missing part.  ``fingerprint`` (the generator's ledger and the sampling settings)
    must match the saved parts', else they are from another generator and are started afresh.
    With a seed, part i uses its own derived seed, so a resumed run gives the same rows.  ``n`` is
    not in the fingerprint: a part depends only on its index and size, so a run asked for more rows
    keeps every saved full part and samples the rest (a part of another size is sampled again).
    ``with_start``: ``sample(count, seed, start)`` is also told the index of the part's first row
    (e.g. to take prompts in order whatever parts were already made)."""
    import dataclasses

    from trainer.seeds import stream_seed

    from .lm.decoding import SampleStats

    g = config.generate
    folder = Path(config.output.dir) / "generation"
    manifest = folder / "manifest.json"
    want = json.dumps({**fingerprint, "part": GENERATION_PART}, sort_keys=True, default=str)
    if manifest.is_file() and manifest.read_text() != want:
        shutil.rmtree(folder)  # parts of another generator or other settings: not ours to resume
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(manifest, want)
    frames, stats = [], None
    for i, start in enumerate(range(0, g.n, GENERATION_PART)):
        count = min(GENERATION_PART, g.n - start)
        rows_path, stats_path = folder / f"part-{i:05d}.parquet", folder / f"part-{i:05d}.stats.json"
        part_stats = SampleStats(**json.loads(stats_path.read_text())) if stats_path.is_file() else None
        if part_stats is not None and part_stats.requested == count and rows_path.is_file():
            part = pd.read_parquet(rows_path)  # Parquet keeps the spec's dtypes (Int64, string)
        else:  # missing, or the last part of a smaller n
            seed = None if g.seed is None else stream_seed(g.seed, f"generate:{i}")
            part, part_stats = sample(count, seed, start) if with_start else sample(count, seed)
            tmp = rows_path.with_name(f".{rows_path.name}.tmp-{os.getpid()}")
            part.to_parquet(tmp, index=False)
            os.replace(tmp, rows_path)
            atomic_write_text(stats_path, json.dumps(dataclasses.asdict(part_stats)))  # after the rows: a pair
        frames.append(part)
        stats = part_stats if stats is None else stats.merge(part_stats)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(), stats


def generator_fingerprint(config: SynthConfig) -> dict:
    """What identifies the saved generator and the sampling settings (for resumable_sample)."""
    import dataclasses
    import hashlib

    saved = Path(config.output.dir) / "generator"
    # contents, not times: a resumed run that re-saves the same trained weights keeps its parts
    files = sorted((str(p.relative_to(saved)), hashlib.sha256(p.read_bytes()).hexdigest())
                   for p in saved.rglob("*") if p.is_file()) if saved.is_dir() else []
    settings = {k: v for k, v in dataclasses.asdict(config.generate).items() if k != "n"}
    return {"generator_files": files, "generate": settings}


def candidate_settings(config: SynthConfig) -> dict:
    """What makes Private Evolution's candidates besides its own settings: the sampling of the first
    draw (``generate``, but n: the population is in the evolution's settings) and the ``evolve`` section
    (variation temperature and mode, fields changed, field weight of the votes' embeddings)."""
    import dataclasses

    return {"generate": {k: v for k, v in dataclasses.asdict(config.generate).items() if k != "n"},
            "evolve": dataclasses.asdict(config.evolve)}


def training_curves(run_dir: str | Path, card: dict, points: int = 25) -> dict | None:
    """The run's DP-SGD loss per step (``<run>/checkpoints/train_log.jsonl``, not DP) and the ε spent
    after each step, recomputed from the card's ledger (every earlier stage composed); None without
    a DP-SGD stage."""
    from trainer.accounting import epsilon
    from trainer.loop import read_train_log

    p = card.get("privacy", {})
    stages = p.get("stages", [])
    train = next((s for s in stages if s["stage"] == "train"), None)
    if train is None or not train["steps"]:
        return None
    prior = [(s["noise_multiplier"], s["sample_rate"], s["steps"]) for s in stages if s is not train]
    total = int(train["steps"])
    steps = sorted({max(1, round(total * i / points)) for i in range(1, points + 1)})
    curve = [[k, epsilon([*prior, (train["noise_multiplier"], train["sample_rate"], k)],
                         delta=p["accountant_delta"], accountant=p["accountant"])] for k in steps]
    return {"loss": [list(x) for x in read_train_log(Path(run_dir) / "checkpoints")], "epsilon": curve}
