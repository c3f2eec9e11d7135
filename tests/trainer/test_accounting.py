"""ε from our accountants against Google's independent dp_accounting implementation."""

from __future__ import annotations

import pytest

from trainer import BudgetExceededError, PrivacyLedger, calibrate_noise_multiplier
from trainer.accounting import epsilon

dp_accounting = pytest.importorskip("dp_accounting")
from dp_accounting.pld import pld_privacy_accountant  # noqa: E402
from dp_accounting.rdp import rdp_privacy_accountant  # noqa: E402

GRID = [  # (q, sigma, steps, delta)
    (0.01, 1.0, 1000, 1e-5),
    (0.001, 0.8, 10000, 1e-6),
    (0.05, 2.0, 500, 1e-5),
    (0.1, 1.5, 100, 1e-5),
    (0.004, 0.6, 3000, 1e-5),
    (0.02, 1.1, 2000, 1e-7),
]


def _event(q, sigma, steps):
    return dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps
    )


@pytest.mark.parametrize("q,sigma,steps,delta", GRID)
def test_prv_matches_google_pld(q, sigma, steps, delta):
    ref = pld_privacy_accountant.PLDAccountant(value_discretization_interval=1e-3)
    ref.compose(_event(q, sigma, steps))
    want = ref.get_epsilon(delta)
    got = epsilon([(sigma, q, steps)], delta=delta, accountant="prv")
    assert got == pytest.approx(want, rel=0.02)


@pytest.mark.parametrize("q,sigma,steps,delta", GRID)
def test_rdp_matches_google_rdp(q, sigma, steps, delta):
    ref = rdp_privacy_accountant.RdpAccountant()
    ref.compose(_event(q, sigma, steps))
    got = epsilon([(sigma, q, steps)], delta=delta, accountant="rdp")
    assert got == pytest.approx(ref.get_epsilon(delta), rel=0.02)


def test_composition_of_stages_matches_google():
    """A DP histogram (σ=5, one full-data release) then training: one composed ε."""
    ref = pld_privacy_accountant.PLDAccountant(value_discretization_interval=1e-3)
    ref.compose(dp_accounting.GaussianDpEvent(5.0))
    ref.compose(_event(0.02, 1.0, 500))
    ledger = PrivacyLedger(delta=1e-5)
    ledger.record("histogram:rating", noise_multiplier=5.0, sample_rate=1.0)
    for _ in range(500):
        ledger.record("train", noise_multiplier=1.0, sample_rate=0.02)
    assert [e.steps for e in ledger.events] == [1, 500]
    assert ledger.epsilon() == pytest.approx(ref.get_epsilon(1e-5), rel=0.02)


def test_calibration_reaches_target_from_below():
    sigma = calibrate_noise_multiplier(target_epsilon=3.0, delta=1e-5, sample_rate=0.01, steps=800)
    eps = epsilon([(sigma, 0.01, 800)], delta=1e-5)
    assert 2.95 <= eps <= 3.0
    assert epsilon([(sigma * 0.97, 0.01, 800)], delta=1e-5) > 3.0  # not needlessly noisy


def test_calibration_counts_prior_stages():
    prior = [(2.0, 1.0, 1)]
    sigma = calibrate_noise_multiplier(target_epsilon=3.0, delta=1e-5, sample_rate=0.01, steps=800, prior=prior)
    assert epsilon([*prior, (sigma, 0.01, 800)], delta=1e-5) <= 3.0
    with pytest.raises(BudgetExceededError, match="already spent"):
        calibrate_noise_multiplier(target_epsilon=0.5, delta=1e-5, sample_rate=0.01, steps=800, prior=[(0.5, 1.0, 1)])


def test_ledger_round_trips(tmp_path):
    ledger = PrivacyLedger(delta=1e-6, accountant="rdp", privacy_unit="user")
    ledger.record("train", noise_multiplier=1.0, sample_rate=0.01, steps=10, max_grad_norm=1.0)
    ledger.save(tmp_path / "l.json")
    again = PrivacyLedger.load(tmp_path / "l.json")
    assert again == ledger and again.epsilon() == ledger.epsilon()


def test_too_small_epsilon_says_smallest_feasible_and_most_steps():
    with pytest.raises(BudgetExceededError) as err:
        calibrate_noise_multiplier(target_epsilon=0.01, delta=1e-5, sample_rate=0.5, steps=1000)
    msg = str(err.value)
    assert "too small for 1000 steps" in msg and "Ask for ε ≥" in msg and "at most" in msg
    floor = float(msg.split("Ask for ε ≥ ")[1].split(",")[0])
    assert floor == pytest.approx(epsilon([(50.0, 0.5, 1000)], delta=1e-5), rel=1e-2)
    most = int(msg.split("at most ")[1].split(" steps")[0])
    assert epsilon([(50.0, 0.5, most)], delta=1e-5) <= 0.01 < epsilon([(50.0, 0.5, most + 1)], delta=1e-5)


def test_epsilon_prints_none_of_opacus_numerical_warnings():
    """PRV at q = 1 divides by zero in log and RDP warns at the edge of its order grid; the values are
    right (or a valid looser bound), so the user is not shown them (hundreds per calibration)."""
    import warnings

    from trainer.accounting.accountants import _epsilon, epsilon

    _epsilon.cache_clear()  # a cached value would print nothing anyway
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        epsilon([(10.0, 1.0, 1), (1.0, 0.01, 100)], delta=1e-5, accountant="prv")
        epsilon([(50.0, 0.01, 10)], delta=1e-5, accountant="rdp")
    assert [str(w.message) for w in caught] == []
