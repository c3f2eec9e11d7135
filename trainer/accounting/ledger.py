"""The privacy ledger: every private stage of a run, and the ε they compose to.

It travels with every artefact (checkpoint, export card, evaluation report) as
JSON.  Stages are recorded as they happen; a DP-SGD run records one event whose
``steps`` grows, so a resumed run continues the same event instead of starting
a second one.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .accountants import ACCOUNTANTS, epsilon

CAVEATS = {
    "non_private": "a stage was trained WITHOUT noise (non_private = true): there is no DP guarantee",
    "insecure_seed": "the run used a fixed seed (insecure_seed = true): anyone who knows the seed can recompute "
                     "the noise, and for them there is no DP guarantee",
}


@dataclass
class PrivacyEvent:
    stage: str  # e.g. "train", "histogram:rating"
    noise_multiplier: float
    sample_rate: float
    steps: int = 0
    details: dict[str, Any] = field(default_factory=dict)  # C, clipping mode, ...
    # δ spent outside the Gaussian mechanism's privacy curve (e.g. partition selection: the
    # chance a value only one row holds is released); added to the run's δ, not accounted for by ε
    extra_delta: float = 0.0
    # "gaussian": a (subsampled) Gaussian mechanism, any accountant composes it exactly.  "zcdp": a
    # ρ-zCDP mechanism (e.g. an exponential-mechanism selection, ρ = ε²/8): its RDP curve α·ρ is the
    # Gaussian's at σ = 1/√(2ρ), q = 1, which is how it is stored; only the RDP accountant may compose
    # it (PRV would assume the Gaussian's whole privacy curve, which a zCDP bound does not give)
    mechanism: str = "gaussian"


@dataclass
class PrivacyLedger:
    delta: float
    accountant: str = "prv"
    privacy_unit: str = "example"
    events: list[PrivacyEvent] = field(default_factory=list)
    declared_public: list[str] = field(default_factory=list)  # what was not paid for, and why
    # what weakens or voids the guarantee, stated on every card: "non_private" (a stage ran without
    # noise), "insecure_seed" (the noise can be recomputed from a seed)
    caveats: list[str] = field(default_factory=list)
    # N, the number of privacy units the run read: treated as public (it sets δ = 1/N^1.1 and the
    # sampling rate q = B/N, the usual DP-SGD practice), stated on the card beside δ
    n_units: int | None = None

    def __post_init__(self):
        if self.accountant not in ACCOUNTANTS:
            raise ConfigError(f"unknown accountant {self.accountant!r}; choose one of {', '.join(ACCOUNTANTS)}")
        if not 0 < self.delta < 1:
            raise ConfigError(f"delta must be in (0, 1), got {self.delta}")
        self.events = [e if isinstance(e, PrivacyEvent) else PrivacyEvent(**e) for e in self.events]

    # ------------------------------------------------------------------ recording
    def add_caveat(self, caveat: str) -> None:
        if caveat not in CAVEATS:
            raise ConfigError(f"unknown caveat {caveat!r}; one of {', '.join(CAVEATS)}")
        if caveat not in self.caveats:
            self.caveats.append(caveat)

    def record(self, stage: str, *, noise_multiplier: float, sample_rate: float, steps: int = 1,
               extra_delta: float = 0.0, **details) -> None:
        """Add ``steps`` of a (subsampled) Gaussian mechanism; merges with the same stage's last event.

        ``extra_delta`` is δ the mechanism spends beside its Gaussian part (it comes out of the
        run's δ before the accountant computes ε); it refuses to push the total past δ/2.
        """
        if extra_delta < 0 or self.extra_delta + extra_delta > self.delta / 2:
            raise ConfigError(f"stage {stage!r}: extra δ {extra_delta:.3g} on top of {self.extra_delta:.3g} would "
                              f"leave the accountant less than half of δ={self.delta:.3g}")
        last = self.events[-1] if self.events else None
        if (
            last is not None
            and extra_delta == 0
            and last.extra_delta == 0
            and last.stage == stage
            and last.noise_multiplier == noise_multiplier
            and last.sample_rate == sample_rate
            and last.details == details
            and last.mechanism == "gaussian"
        ):
            last.steps += steps
        else:
            self.events.append(PrivacyEvent(stage, float(noise_multiplier), float(sample_rate), steps, details,
                                            float(extra_delta)))

    def record_zcdp(self, stage: str, *, rho: float, **details) -> None:
        """Add a ρ-zCDP mechanism (composed exactly by the RDP accountant only: epsilon() refuses PRV)."""
        if not (math.isfinite(rho) and rho > 0):
            raise ConfigError(f"stage {stage!r}: ρ must be a finite number > 0, got {rho}")
        self.events.append(PrivacyEvent(stage, 1.0 / math.sqrt(2.0 * rho), 1.0, 1, {**details, "rho": float(rho)},
                                        mechanism="zcdp"))

    def resume_stage(self, saved: "PrivacyLedger", stage: str, *, where: str) -> None:
        """Take ``stage``'s spend from a checkpoint's ledger into this one, in place (the caller keeps its
        ledger object, so later stages of the run compose with what the resumed stage spent).  The
        checkpoint must have been written after the same prior stages as this run's."""
        mine = [e for e in self.events if e.stage != stage]
        theirs = [e for e in saved.events if e.stage != stage]
        if (mine != theirs or saved.delta != self.delta or saved.accountant != self.accountant
                or saved.privacy_unit != self.privacy_unit):
            raise ConfigError(f"{where} was written after other prior privacy stages "
                              f"({[e.stage for e in theirs]}, δ={saved.delta}, {saved.accountant}, unit "
                              f"{saved.privacy_unit}) than this run has ({[e.stage for e in mine]}, δ={self.delta}, "
                              f"{self.accountant}, unit {self.privacy_unit}): resume with the same config, or start "
                              "in a fresh output folder")
        self.events = mine + [e for e in saved.events if e.stage == stage]
        for caveat in saved.caveats:
            self.add_caveat(caveat)

    @property
    def history(self) -> list[tuple[float, float, int]]:
        return [(e.noise_multiplier, e.sample_rate, e.steps) for e in self.events]

    @property
    def extra_delta(self) -> float:
        return sum(e.extra_delta for e in self.events)

    @property
    def accountant_delta(self) -> float:
        """The part of δ left to the accountant: δ minus every stage's ``extra_delta``."""
        return self.delta - self.extra_delta

    def epsilon(self, delta: float | None = None) -> float:
        """ε of the whole run at its δ (or at ``delta``): the accountant's ε at δ − extra δ."""
        total = self.delta if delta is None else delta
        zcdp = [e.stage for e in self.events if e.mechanism == "zcdp"]
        if zcdp and self.accountant != "rdp":
            raise ConfigError(f"stages {zcdp} are ρ-zCDP mechanisms, which only the rdp accountant composes exactly "
                              f"(this ledger uses {self.accountant}): set train.accountant = \"rdp\"")
        if total <= self.extra_delta:
            return math.inf
        return epsilon(self.history, delta=total - self.extra_delta, accountant=self.accountant)

    def steps(self, stage: str = "train") -> int:
        return sum(e.steps for e in self.events if e.stage == stage)

    # ---------------------------------------------------------------- persistence
    def to_dict(self) -> dict:
        eps = self.epsilon()
        d = asdict(self)
        d["epsilon"] = eps if math.isfinite(eps) else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PrivacyLedger":
        d = {k: v for k, v in d.items() if k != "epsilon"}
        return cls(**d)

    def save(self, path: str | Path) -> None:
        from ..io import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: str | Path) -> "PrivacyLedger":
        return cls.from_dict(json.loads(Path(path).read_text()))
