"""ε from a history of subsampled Gaussian mechanisms, with Opacus' accountants.

Every private stage in dpsynth (DP-SGD steps, a DP histogram) is a (possibly
subsampled) Gaussian mechanism, so one history of (noise_multiplier,
sample_rate, steps) composes them all.  A histogram is (σ, q=1, 1 step).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

from ..errors import BudgetExceededError, ConfigError

ACCOUNTANTS = ("prv", "rdp")
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
) -> float:
    """The smallest σ (to ``tolerance`` in ε) such that ``prior`` + ``steps`` DP-SGD steps cost ≤ target ε."""
    spent = epsilon(prior, delta=delta, accountant=accountant)
    if spent >= target_epsilon:
        raise BudgetExceededError(
            f"earlier stages already spent ε={spent:.3f} of the target ε={target_epsilon}; "
            "raise the target or spend less before training"
        )

    def eps_at(sigma: float) -> float:
        return epsilon([*prior, (sigma, sample_rate, steps)], delta=delta, accountant=accountant)

    lo, hi = 0.0, 1.0
    while eps_at(hi) > target_epsilon:
        lo, hi = hi, hi * 2
        if hi > 1e5:
            raise BudgetExceededError(
                f"ε={target_epsilon} cannot be reached with {steps} steps at q={sample_rate}"
            )
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
