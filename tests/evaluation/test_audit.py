"""The one-run privacy audit: its statistics by hand, its power without noise, its validity with noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from evaluation.audit import (
    auc,
    audit_scores,
    epsilon_lower_bound,
    exposure,
    guess_counts,
    p_value,
    run_audit,
)
from tests.trainer.models import tiny_llama
from trainer import TrainConfig


def test_p_value_without_delta_is_the_binomial_tail():
    # eps-DP: correct guesses are dominated by Binomial(r, e^eps / (1 + e^eps))
    q = math.exp(1.0) / (1 + math.exp(1.0))
    assert p_value(100, 20, 17, 1.0, 0.0) == pytest.approx(stats.binom.sf(16, 20, q))
    # the delta term only adds
    assert p_value(100, 20, 17, 1.0, 1e-3) > p_value(100, 20, 17, 1.0, 0.0)


def test_epsilon_lower_bound_inverts_the_p_value():
    eps = epsilon_lower_bound(1000, 100, 100, 0.0, alpha=0.05)
    # all 100 right: P[Bin(100, q) = 100] = q^100 = 0.05 at the bound
    q = 0.05 ** (1 / 100)
    assert eps == pytest.approx(math.log(q / (1 - q)), rel=1e-6)
    assert epsilon_lower_bound(1000, 100, 50, 0.0, alpha=0.05) == 0.0  # chance level proves nothing


def test_guesses_auc_and_exposure_by_hand():
    scores = np.array([0.9, 0.8, 0.1, 0.4, 0.2, 0.7])
    included = np.array([True, True, False, False, True, False])
    assert guess_counts(scores, included, 2) == (4, 3)  # top 2 (0.9, 0.8) both in; bottom 2: 0.1 out, 0.2 in
    assert auc(scores, included) == pytest.approx(7 / 9)  # 0.9 and 0.8 beat all 3 excluded, 0.2 beats 0.1
    # excluded {0.1, 0.4, 0.7}: ranks 1, 1, 3 -> exposures 2, 2, 2 - log2(3)
    assert exposure(scores, included) == pytest.approx((4 - math.log2(3) + 2) / 3)


def _canaries(m, vocab, length, seed):
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(1, vocab, (length,), generator=g).tolist()} for _ in range(m)]


def _audit(noise_multiplier=None, target_epsilon=None, seed=0, non_private=False):
    m, vocab = 400, 128
    model = tiny_llama(vocab=vocab, dtype=torch.float32, seed=seed)
    config = TrainConfig(noise_multiplier=noise_multiplier, target_epsilon=target_epsilon, non_private=non_private,
                         expected_batch_size=50,
                         physical_batch_size=50, steps=120, learning_rate=1e-2, max_grad_norm=1.0, seed=seed, insecure_seed=True,
                         progress=False)
    return run_audit(model, [], _canaries(m, vocab, 10, seed), config, seed=seed)


@pytest.mark.slow
def test_audit_has_power_without_noise():
    result = _audit(non_private=True)
    assert math.isinf(result.claimed_epsilon)
    assert result.auc > 0.9
    assert result.epsilon_lower > 1.0, result.summary()


@pytest.mark.slow
def test_audit_never_contradicts_the_guarantee_with_noise():
    result = _audit(target_epsilon=2.0)
    assert result.delta == pytest.approx(0.01 / 400)  # audited at a smaller δ than training's 1/N^1.1 ...
    assert result.claimed_epsilon > 2.0  # ... where the accountant's ε is larger than the ε=2 at training's δ
    assert result.epsilon_lower <= result.claimed_epsilon, result.summary()


def test_audit_scores_on_a_perfect_and_a_blind_attack():
    rng = np.random.default_rng(0)
    included = rng.random(1000) < 0.5
    perfect = audit_scores(included.astype(float), included, delta=1e-5, claimed_epsilon=math.inf)
    assert perfect.auc == 1.0 and perfect.correct == perfect.guesses and perfect.epsilon_lower > 2.0
    blind = audit_scores(rng.random(1000), included, delta=1e-5, claimed_epsilon=1.0)
    assert blind.epsilon_lower < 0.5 and 0.4 < blind.auc < 0.6
