"""TrainConfig: every knob of a DP training run, with its help text and checks."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields

from .errors import ConfigError


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    # -- privacy --------------------------------------------------------------
    target_epsilon: float | None = _f(None, "Target ε for the whole run; σ is calibrated to reach it. Give this or noise_multiplier.")
    noise_multiplier: float | None = _f(None, "σ: noise std as a multiple of max_grad_norm. Give this or target_epsilon.")
    delta: float | None = _f(None, "δ. Default: 1 / N^1.1 for N privacy units (well below 1/N).")
    max_grad_norm: float = _f(1.0, "C: bound on each privacy unit's whole gradient (L2).")
    clipping: str = _f("per_layer", "per_layer (C split as C/sqrt(L) over parameter groups, clipped inside each layer's backward) or flat (one C on the whole gradient).", choices=("per_layer", "flat"))
    automatic_clipping: bool = _f(False, "Normalise every unit's gradient to norm C (AUTO-S) instead of clipping.")
    norm_method: str = _f("auto", "Per-sample norm method per layer: auto (cost model), ghost or instantiate.", choices=("auto", "ghost", "instantiate"))
    accountant: str = _f("prv", "Privacy accountant: prv (Opacus PRV, default) or rdp.", choices=("prv", "rdp"))
    privacy_unit: str = _f("example", "example, or user (rows grouped by the units given to the trainer).", choices=("example", "user"))
    max_examples_per_user: int = _f(1, "k: rows a sampled user contributes to one step at most (user-level only).")
    # -- batches and steps ---------------------------------------------------
    expected_batch_size: int = _f(64, "Expected logical batch, in privacy units (Poisson sampling: q = this / N).")
    physical_batch_size: int = _f(8, "Rows per forward/backward micro-batch (bounds memory; not a privacy knob).")
    steps: int = _f(100, "Optimizer steps (logical batches).")
    # -- optimisation -------------------------------------------------------
    learning_rate: float = _f(1e-3, "AdamW learning rate.")
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    warmup_steps: int = _f(0, "Linear learning-rate warm-up steps.")
    dtype: str = _f("fp32", "Compute dtype: fp32, or bf16 autocast (parameters stay fp32).", choices=("fp32", "bf16"))
    # -- bookkeeping ----------------------------------------------------------
    seed: int | None = _f(None, "Seed for sampling and noise. None: the OS's secure random source (use a seed only in tests).")
    checkpoint_every: int = _f(0, "Write a checkpoint every this many steps (0: only at the end).")
    log_every: int = _f(10, "Recompute ε for the progress bar every this many steps.")
    progress: bool = _f(True, "Show a progress bar.")

    def __post_init__(self):
        if (self.target_epsilon is None) == (self.noise_multiplier is None):
            raise ConfigError("give exactly one of target_epsilon and noise_multiplier")
        if self.target_epsilon is not None and not self.target_epsilon > 0:
            raise ConfigError(f"target_epsilon must be > 0, got {self.target_epsilon}")
        if self.noise_multiplier is not None and self.noise_multiplier < 0:
            raise ConfigError(f"noise_multiplier must be >= 0, got {self.noise_multiplier}")
        if not self.max_grad_norm > 0:
            raise ConfigError(f"max_grad_norm must be > 0, got {self.max_grad_norm}")
        for f in fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ConfigError(f"{f.name} must be one of {', '.join(choices)}; got {getattr(self, f.name)!r}")
        for name in ("expected_batch_size", "physical_batch_size", "steps", "max_examples_per_user"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.delta is not None and not 0 < self.delta < 1:
            raise ConfigError(f"delta must be in (0, 1), got {self.delta}")
        if self.max_examples_per_user > self.physical_batch_size:
            raise ConfigError("max_examples_per_user must be <= physical_batch_size (a user's rows share a micro-batch)")

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
