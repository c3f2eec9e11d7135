"""The column-model road (``columns.model = aim``, ``mst`` or ``pairs``): a DP marginal model for a record's categorical
and numeric columns, the DP LM for its text columns written *given* them.

Budget, in one ledger: the column model is ρ-zCDP, recorded as its Gaussian measurements (one
event per noise level) and, for AIM and MST, its exponential-mechanism selections (one zCDP event,
which makes the run account with RDP; the pairs workload selects nothing, so the run keeps its
accountant, PRV by default); it is given the ρ at which it alone, after the domain estimates,
spends ``columns.budget_share`` of what is left of the target ε (all of it for a table without
text), under the run's accountant; the LM's DP-SGD then calibrates its σ to the run's target with
every earlier stage as prior.
The fitted model is kept in ``<run>/column_model`` so a resumed run re-uses it (a refit would be
a second, unpaid release).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from trainer import PrivacyLedger
from trainer.accounting.accountants import epsilon
from trainer.errors import BudgetExceededError, ConfigError
from trainer.io import atomic_directory
from trainer.seeds import numpy_rng

from ..lm.decoding import SampleStats
from ..marginals import ColumnModel
from ..marginals.column_model import GAUSSIAN_ONLY
from ..spec import DatasetSpec
from .grammar import derive_grammar
from .serialize import texts_to_frame

KIND = "dpsynth.ColumnTableGenerator"


def check_column_road(config) -> None:
    """What the column road cannot do, refused before anything is released."""
    spec = config.spec
    if spec.grammar:
        raise ConfigError("the column model road (columns.model = aim, mst or pairs) derives the grammar of the text columns itself; drop spec.grammar (or "
                          "use columns.model = lm)")
    if spec.conditioning_weights is not None:
        raise ConfigError("the column model road models every categorical and numeric column with DP; drop "
                          "spec.conditioning_weights")
    if config.train.target_epsilon is None or config.train.non_private:
        raise ConfigError("the column model road needs train.target_epsilon (the column model takes its share of it; it "
                          "has no non-private or fixed-σ mode)")
    if not [c for c in spec.columns if c.type != "text"]:
        raise ConfigError("the column model road: the spec has no categorical or numeric column to model")


def split_spec(spec: DatasetSpec) -> DatasetSpec:
    """The spec with every categorical and numeric column as a conditioning column (drawn from the column
    model, in the LM's prompt), so that the LM writes the text columns only."""
    return dataclasses.replace(spec, conditioning=[c.name for c in spec.columns if c.type != "text"])


def run_accountant(config) -> str:
    """The accountant of a column-road run: RDP when the column model selects with the exponential
    mechanism (a ρ-zCDP step no other accountant composes), else the configured one."""
    return config.train.accountant if config.columns.model in GAUSSIAN_ONLY else "rdp"


def column_rho(ledger: PrivacyLedger, target_epsilon: float, share: float) -> float:
    """The ρ at which the column model alone, after the ledger's stages, spends ``share`` of the ε left,
    under the ledger's accountant (the model's measurements compose as one Gaussian of multiplier
    1/√(2ρ), q = 1)."""
    prior = ledger.history
    delta = ledger.accountant_delta
    accountant = ledger.accountant
    spent = epsilon(prior, delta=delta, accountant=accountant)
    if spent >= target_epsilon:
        raise BudgetExceededError(f"earlier stages already spent ε={spent:.3f} of the target ε={target_epsilon}")
    goal = spent + share * (target_epsilon - spent)

    def eps_at(rho: float) -> float:
        return epsilon([*prior, (1 / math.sqrt(2 * rho), 1.0, 1)], delta=delta, accountant=accountant)

    lo, hi = 1e-8, 1.0
    while eps_at(hi) < goal:
        lo, hi = hi, hi * 2
    # bisection in log ρ to 1e-5 relative (ρ's ε is smooth; PRV costs ~0.1 s a call)
    while hi / lo > 1 + 1e-5:
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if eps_at(mid) <= goal else (lo, mid)
    return lo


def record_spend(ledger: PrivacyLedger, model: ColumnModel) -> None:
    for multiplier, count in sorted(Counter(model.spend.measure_multipliers).items()):
        ledger.record("columns:measure", noise_multiplier=multiplier, sample_rate=1.0, steps=count,
                      model=model.mechanism, sensitivity=model.sensitivity)
    if model.spend.select_rhos:  # MST on one column selects nothing
        ledger.record_zcdp("columns:select", rho=sum(model.spend.select_rhos), selections=len(model.spend.select_rhos),
                           model=model.mechanism)


def rows_for_column_model(frame: pd.DataFrame, units: list | None, k: int, seed: int | None) -> pd.DataFrame:
    """Example level: every row.  User level: at most ``k`` rows per user, drawn at random (the model's
    sensitivity is then ``k``).  A user's draw depends on that user's rows and one secret salt only, so
    adding or removing another user changes nothing else that is kept."""
    if units is None:
        return frame
    import hashlib

    salt = numpy_rng(seed, "column_model_rows").bytes(16)
    per_user: dict = {}
    for i, u in enumerate(units):
        j = per_user.setdefault(u, [])
        key = hashlib.blake2b(f"{u!r}\x00{len(j)}".encode(), key=salt, digest_size=8).digest()
        j.append((key, i))
    kept = sorted(i for rows in per_user.values() for _, i in sorted(rows)[:k])
    return frame.iloc[kept]


def fit_column_model(config, spec: DatasetSpec, frame: pd.DataFrame, units: list | None, ledger: PrivacyLedger,
                     *, share: float, progress: bool) -> ColumnModel:
    """The column model of ``spec``'s categorical and numeric columns, paid for in ``ledger`` (fitted once,
    then re-used from ``<run>/column_model``)."""
    columns = [c for c in spec.columns if c.type != "text"]
    saved = Path(config.output.dir) / "column_model"
    rho = column_rho(ledger, config.train.target_epsilon, share)
    sensitivity = config.train.max_examples_per_user if units is not None else 1
    if saved.is_dir():
        model = ColumnModel.from_pretrained(saved)
        if model.columns != [c.name for c in columns] or not math.isclose(model.spend.rho, rho, rel_tol=1e-6) \
                or model.sensitivity != sensitivity or model.mechanism != config.columns.model:
            raise ConfigError(f"{saved} was fitted with {model.mechanism} for columns {model.columns} at "
                              f"ρ={model.spend.rho:.6g}, sensitivity {model.sensitivity}; this config asks for "
                              f"{config.columns.model} on {[c.name for c in columns]} at ρ={rho:.6g}, sensitivity "
                              f"{sensitivity}: pass --overwrite to start afresh")
    else:
        rows = rows_for_column_model(frame, units, sensitivity, config.train.seed)
        model = ColumnModel.fit(rows, columns, rho, rng=numpy_rng(config.train.seed, "column_model"),
                                sensitivity=sensitivity, settings=config.columns.settings(), progress=progress,
                                source=config.data.path, mechanism=config.columns.model)
        model.save_pretrained(saved)
    record_spend(ledger, model)
    return model


class ColumnTableGenerator:
    """A table without text columns: the column model is the whole generator (no LM)."""

    def __init__(self, spec: DatasetSpec, column_model: ColumnModel, ledger: PrivacyLedger | None = None):
        self.spec = spec
        self.conditioning = column_model
        self.ledger = ledger
        self.grammar = derive_grammar(spec)
        self.model_description = (f"{column_model.source}: a graphical model of {len(spec.columns)} columns, "
                                  "no language model (the table has no text column)")

    def sample(self, n: int, *, seed: int | None = None, progress: bool = False, field_temperature=None,
               **_decoding) -> tuple[pd.DataFrame, SampleStats]:
        """``n`` records (the decoding settings of the LM road do not apply)."""
        if field_temperature:
            raise ValueError(f"field_temperature {dict(field_temperature)}: this table has no text column, so no "
                             "language model writes a field")
        rows = self.conditioning.sample_frame(n, np.random.default_rng(seed))
        frame = texts_to_frame(rows[self.spec.names].to_dict("records"), self.spec)
        return frame, SampleStats(requested=n, emitted=n, extra={"unparseable_by_spec": 0})

    def save_pretrained(self, directory: str | Path) -> None:
        with atomic_directory(directory) as tmp:
            meta = {"kind": KIND, "spec": dataclasses.asdict(self.spec), "model_description": self.model_description}
            (tmp / "dpsynth_config.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
            self.conditioning.save_pretrained(tmp / "column_model")
            if self.ledger is not None:
                self.ledger.save(tmp / "privacy_ledger.json")
            (tmp / "grammar.lark").write_text(self.grammar)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "ColumnTableGenerator":
        from ..saved_meta import read_meta

        directory = Path(directory)
        meta = read_meta(directory, KIND)
        if meta is None:
            raise FileNotFoundError(f"{directory} is not a saved dpsynth column-model generator")
        ledger_path = directory / "privacy_ledger.json"
        ledger = PrivacyLedger.load(ledger_path) if ledger_path.is_file() else None
        return cls(DatasetSpec.from_dict(meta["spec"]), ColumnModel.from_pretrained(directory / "column_model"), ledger)


def note_accountant(config) -> None:
    if run_accountant(config) != config.train.accountant:
        print(f"dpsynth: columns.model = {config.columns.model}: the column model's selections are ρ-zCDP, so the run is accounted with "
              "RDP (train.accountant = rdp), which composes them with DP-SGD exactly", file=sys.stderr)
