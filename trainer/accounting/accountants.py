"""ε from a history of subsampled Gaussian mechanisms, with Opacus' accountants.

Every private stage in dpsynth (DP-SGD steps, a DP histogram) is a (possibly
subsampled) Gaussian mechanism, so one history of (noise_multiplier,
sample_rate, steps) composes them all.  A histogram is (σ, q=1, 1 step).
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache
from typing import Sequence

from ..errors import BudgetExceededError, ConfigError

ACCOUNTANTS = ("prv", "rdp")
# Above this noise multiplier the noise swamps any clipped gradient sum a run could have:
# calibration refuses rather than train a model that cannot learn.
MAX_NOISE_MULTIPLIER = 50.0
# Below this one the noise is negligible and the PRV accountant needs tens of GB (σ = 0.05:
# 114 s); calibration never goes lower (it then spends less than the target).
MIN_NOISE_MULTIPLIER = 0.2
# Outside these the accountants lose precision (PRV fails below δ ≈ 1e-13) or a run promises
# nothing.  A run without noise must say so: TrainConfig(non_private=True).
MIN_DELTA = 1e-12
MAX_EPSILON = 100.0
History = Sequence[tuple[float, float, int]]  # (noise_multiplier, sample_rate, steps)


def _make(name: str):
    from opacus.accountants import PRVAccountant, RDPAccountant

    if name == "prv":
        return PRVAccountant()
    if name == "rdp":
        return RDPAccountant()
    raise ConfigError(f"unknown accountant {name!r}; choose one of {', '.join(ACCOUNTANTS)}")


def epsilon(history: History, *, delta: float, accountant: str = "prv") -> float:
    """ε spent by the composed ``history`` at ``delta`` (an upper bound for PRV)."""
    return _epsilon(tuple((float(s), float(q), int(n)) for s, q, n in history if n > 0), float(delta), accountant)


@lru_cache(maxsize=256)
def _epsilon(history: tuple, delta: float, accountant: str) -> float:
    if not history:
        return 0.0
    if any(s <= 0 for s, _, _ in history):
        return math.inf
    acc = _make(accountant)
    acc.history = list(history)
    with warnings.catch_warnings():
        # Opacus' PRV divides by zero in log for q = 1 stages (its ε is right: tests/trainer/test_accounting.py
        # checks it against dp_accounting), and RDP warns when the best order is at the end of its grid (the
        # bound is then looser, still valid): neither is for the user, and calibration asks hundreds of times
        warnings.filterwarnings("ignore", message="divide by zero encountered in log", category=RuntimeWarning)
        warnings.filterwarnings("ignore", message="Optimal order is the", category=UserWarning)
        return float(acc.get_epsilon(delta=delta))


def calibrate_noise_multiplier(
    *,
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: str = "prv",
    prior: History = (),
    tolerance: float = 0.01,
    max_noise_multiplier: float = MAX_NOISE_MULTIPLIER,
) -> float:
    """The smallest σ (to ``tolerance`` in ε) such that ``prior`` + ``steps`` DP-SGD steps cost ≤ target ε.

    If even σ = ``max_noise_multiplier`` is not enough, BudgetExceededError says the smallest
    ε these steps can reach and the most steps that fit the target.
    """
    if not math.isfinite(target_epsilon) or not 0 < target_epsilon <= MAX_EPSILON:
        raise ConfigError(f"target ε must be in (0, {MAX_EPSILON:g}], got {target_epsilon}")
    spent = epsilon(prior, delta=delta, accountant=accountant)
    if spent >= target_epsilon:
        raise BudgetExceededError(
            f"earlier stages already spent ε={spent:.3f} of the target ε={target_epsilon}; "
            "raise the target or spend less before training"
        )

    def eps_at(sigma: float) -> float:
        return epsilon([*prior, (sigma, sample_rate, steps)], delta=delta, accountant=accountant)

    if eps_at(max_noise_multiplier) > target_epsilon:
        floor = eps_at(max_noise_multiplier)
        fit_lo, fit_hi = 0, steps  # most steps that fit the target at the largest σ
        while fit_hi - fit_lo > 1:
            mid = (fit_lo + fit_hi) // 2
            ok = epsilon([*prior, (max_noise_multiplier, sample_rate, mid)], delta=delta, accountant=accountant)
            fit_lo, fit_hi = (mid, fit_hi) if ok <= target_epsilon else (fit_lo, mid)
        raise BudgetExceededError(
            f"ε={target_epsilon} is too small for {steps} steps at sampling rate q={sample_rate:.4g}: even "
            f"σ={max_noise_multiplier:g} spends ε={floor:.3g}. Ask for ε ≥ {floor:.3g}, or at most "
            f"{fit_lo} steps, or a lower sampling rate (smaller expected batch)."
        )
    if eps_at(MIN_NOISE_MULTIPLIER) <= target_epsilon:
        return MIN_NOISE_MULTIPLIER
    lo, hi = MIN_NOISE_MULTIPLIER, 1.0
    while eps_at(hi) > target_epsilon:
        lo, hi = hi, hi * 2
    while hi - lo > 1e-4 * hi:
        mid = (lo + hi) / 2
        e = eps_at(mid)
        if e > target_epsilon:
            lo = mid
        else:
            hi = mid
            if target_epsilon - e < tolerance:
                break
    return hi
