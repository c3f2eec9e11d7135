"""TrainConfig: every knob of a DP training run, with its help text and checks."""

from __future__ import annotations

import math
import types
import typing
import warnings
from dataclasses import dataclass, field, fields

from .accounting.accountants import MAX_EPSILON, MAX_NOISE_MULTIPLIER, MIN_DELTA, MIN_NOISE_MULTIPLIER
from .errors import ConfigError
from .schedule import SCHEDULES

GROUPED_UNITS = ("user", "document")


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    """Every knob of a DP training run.  ``grouped``: the unit is a group of rows (user, document)."""

    # -- privacy --------------------------------------------------------------
    target_epsilon: float | None = _f(None, "Target ε for the whole run; σ is calibrated to reach it. Give this or noise_multiplier.")
    noise_multiplier: float | None = _f(None, "σ: noise std as a multiple of max_grad_norm. Give this or target_epsilon.")
    delta: float | None = _f(None, "δ. Default: 1 / N^1.1 for N privacy units (well below 1/N).")
    max_grad_norm: float = _f(1.0, "C: bound on each privacy unit's whole gradient (L2).")
    clipping: str = _f("per_layer", "per_layer (C split as C/sqrt(L) over parameter groups, clipped inside each layer's backward) or flat (one C on the whole gradient).", choices=("per_layer", "flat"))
    automatic_clipping: bool = _f(False, "Normalise every unit's gradient to norm C (AUTO-S) instead of clipping.")
    norm_method: str = _f("auto", "Per-sample norm method per layer: auto (cost model), ghost or instantiate.", choices=("auto", "ghost", "instantiate"))
    accountant: str = _f("prv", "Privacy accountant: prv (Opacus PRV, default) or rdp.", choices=("prv", "rdp"))
    privacy_unit: str = _f("example", "example; or user or document: rows grouped by the units given to the trainer (a user's rows, a document's chunks), each unit clipped as one.", choices=("example", "user", "document"))
    max_examples_per_user: int = _f(1, "k: rows a sampled unit contributes to one step at most (user or document level: rows of a user, chunks of a document).")
    non_private: bool = _f(False, "Train WITHOUT differential privacy (σ = 0, ε = ∞): a baseline only; the card then says NOT differentially private.")
    # -- batches and steps ---------------------------------------------------
    expected_batch_size: int = _f(64, "Expected logical batch, in privacy units (Poisson sampling: q = this / N).")
    physical_batch_size: int = _f(8, "Rows per forward/backward micro-batch (bounds memory; not a privacy knob).")
    steps: int = _f(100, "Optimizer steps (logical batches).")
    # -- optimisation -------------------------------------------------------
    learning_rate: float = _f(1e-3, "AdamW learning rate.")
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    warmup_steps: int = _f(0, "Linear learning-rate warm-up steps.")
    lr_schedule: str = _f("constant", "After the warm-up: constant, or cosine (half a cosine from learning_rate down to min_lr_ratio × learning_rate at the last step).", choices=SCHEDULES)
    min_lr_ratio: float = _f(0.1, "lr_schedule = cosine: the last step's rate as a share of learning_rate.")
    dtype: str = _f("fp32", "Compute dtype: fp32, or bf16 autocast (parameters stay fp32).", choices=("fp32", "bf16"))
    # -- bookkeeping ----------------------------------------------------------
    seed: int | None = _f(None, "Seed for sampling and noise (needs insecure_seed = true). None: the OS's secure random source.")
    insecure_seed: bool = _f(False, "Allow a seed: the run becomes reproducible, and anyone who knows the seed can recompute the noise (tests and debugging only; the card says so).")
    checkpoint_every: int = _f(0, "Also write a checkpoint every this many steps (0: only on the time cadence and at the end).")
    checkpoint_minutes: float = _f(5.0, "Write a checkpoint when this many minutes have passed since the last one (0: off).")
    keep_checkpoints: int = _f(2, "Keep the newest this many checkpoints; older ones are removed.")
    replica_check_every: int = _f(25, "Data-parallel runs (torchrun): compare the ranks' parameter fingerprints every this many steps, and at the end (0: at the end only).")
    log_every: int = _f(10, "Recompute ε for the progress bar every this many steps.")
    progress: bool = _f(True, "Show a progress bar.")

    def __post_init__(self):
        check_field_types(self, "train")
        if self.non_private:
            if self.target_epsilon is not None or self.noise_multiplier not in (None, 0):
                raise ConfigError("non_private = true trains without noise: give neither target_epsilon nor a "
                                  "noise_multiplier other than 0")
            self.noise_multiplier = 0.0
        elif (self.target_epsilon is None) == (self.noise_multiplier is None):
            raise ConfigError("give exactly one of target_epsilon and noise_multiplier")
        if self.target_epsilon is not None and not 0 < self.target_epsilon <= MAX_EPSILON:
            raise ConfigError(f"target_epsilon must be a number in (0, {MAX_EPSILON:g}], got {self.target_epsilon} "
                              "(a larger ε promises nothing; for a baseline without privacy set non_private = true)")
        if self.noise_multiplier is not None and not self.non_private:
            if self.noise_multiplier == 0:
                raise ConfigError("noise_multiplier = 0 is training without privacy: set non_private = true to do "
                                  "that on purpose (the card will say NOT differentially private)")
            if not MIN_NOISE_MULTIPLIER <= self.noise_multiplier <= MAX_NOISE_MULTIPLIER:
                raise ConfigError(f"noise_multiplier must be in [{MIN_NOISE_MULTIPLIER}, {MAX_NOISE_MULTIPLIER:g}], "
                                  f"got {self.noise_multiplier}")
        if not (math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0):
            raise ConfigError(f"max_grad_norm must be a finite number > 0, got {self.max_grad_norm}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ConfigError(f"learning_rate must be a finite number > 0, got {self.learning_rate}")
        if not (math.isfinite(self.min_lr_ratio) and 0 <= self.min_lr_ratio <= 1):
            raise ConfigError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight_decay must be a finite number >= 0, got {self.weight_decay}")
        if not (math.isfinite(self.checkpoint_minutes) and self.checkpoint_minutes >= 0):
            raise ConfigError(f"checkpoint_minutes must be a finite number >= 0, got {self.checkpoint_minutes}")
        for f in fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ConfigError(f"{f.name} must be one of {', '.join(choices)}; got {getattr(self, f.name)!r}")
        for name in ("expected_batch_size", "physical_batch_size", "steps", "max_examples_per_user", "log_every",
                     "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "checkpoint_every", "replica_check_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.delta is not None and not MIN_DELTA <= self.delta < 1:
            raise ConfigError(f"delta must be in [{MIN_DELTA:g}, 1), got {self.delta}")
        if self.seed is not None and not self.insecure_seed:
            raise ConfigError("a seed makes the noise reproducible by anyone who knows it, which voids the DP "
                              "guarantee for them: leave seed unset, or set insecure_seed = true on purpose "
                              "(tests, debugging; the card will say so)")
        if self.max_examples_per_user > self.physical_batch_size:
            raise ConfigError("max_examples_per_user must be <= physical_batch_size (a user's rows share a micro-batch)")

    @property
    def grouped(self) -> bool:
        """True when a privacy unit is a group of rows (a user's rows, a document's chunks)."""
        return self.privacy_unit in GROUPED_UNITS

    def resolve_delta(self, n_units: int) -> float:
        """δ for N units: the configured one (warned if ≥ 1/N) or the default 1/N^1.1."""
        if self.delta is None:
            return 1.0 / n_units**1.1
        if self.delta >= 1.0 / n_units:
            warnings.warn(
                f"delta={self.delta} is >= 1/N = {1 / n_units:.3g}: such a δ allows leaking a whole "
                "record; use delta < 1/N",
                stacklevel=2,
            )
        return self.delta


def check_field_types(obj, section: str) -> None:
    """Refuse values of the wrong type in a config dataclass: 2.5 or "4" for an integer, "no" for a
    boolean, a string for a number.  An integer is accepted for a float (and made one)."""
    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):
        value = getattr(obj, f.name)
        kinds = _allowed(hints[f.name])
        if value is None and type(None) in kinds:
            continue
        if isinstance(value, bool):
            ok = bool in kinds
        elif isinstance(value, int):
            ok = int in kinds or float in kinds
            if ok and int not in kinds:
                setattr(obj, f.name, float(value))
        elif isinstance(value, float):
            ok = float in kinds and not math.isnan(value)
        else:
            ok = any(isinstance(value, k) for k in kinds if k not in (int, float, bool, type(None)))
        if not ok:
            want = " or ".join(_type_name(k) for k in kinds)
            raise ConfigError(f"{section}.{f.name} must be {want}, got {value!r} ({type(value).__name__})")


def _allowed(annotation) -> tuple:
    union = isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union
    args = typing.get_args(annotation) if union else (annotation,)
    return tuple(typing.get_origin(a) or a for a in args)


def _type_name(kind) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "unset",
            list: "a list", dict: "a table"}.get(kind, kind.__name__)
