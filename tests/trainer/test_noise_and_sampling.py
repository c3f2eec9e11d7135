"""Noise statistics and Poisson / user-level sampling."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from torch import nn

from trainer import DPTrainer, PoissonSampler, TrainConfig, privatize_gradients
from trainer.noise import add_noise_to_sums
from trainer.sampling import micro_batches

from .models import tiny_llama


def _std_interval(samples: torch.Tensor, alpha=1e-6):
    """Two-sided chi-square confidence interval for the std of zero-mean normal samples."""
    n = samples.numel()
    ss = samples.double().pow(2).sum().item()
    lo = math.sqrt(ss / stats.chi2.ppf(1 - alpha / 2, n))
    hi = math.sqrt(ss / stats.chi2.ppf(alpha / 2, n))
    return lo, hi


def test_noise_std_is_sigma_c_over_b_with_zero_gradients():
    params = [nn.Parameter(torch.zeros(300, 200)), nn.Parameter(torch.zeros(4000)), nn.Parameter(torch.zeros(0))]
    sigma, c, b = 1.3, 0.7, 50.0
    gen = torch.Generator().manual_seed(0)
    privatize_gradients(params, noise_multiplier=sigma, max_grad_norm=c, expected_batch_size=b, generator=gen)
    noise = torch.cat([p.grad.flatten() for p in params])
    lo, hi = _std_interval(noise)
    assert lo <= sigma * c / b <= hi
    assert abs(noise.mean().item()) < 6 * sigma * c / b / math.sqrt(noise.numel())


def test_noise_from_several_workers_reaches_every_coordinate_once():
    """The CPU road fills parameters on pool threads in slices (trainer.noise.INLINE_ELEMENTS): a slice
    skipped would leave coordinates without noise, one filled twice would have sqrt(2) times the std."""
    from trainer.noise import INLINE_ELEMENTS, make_generators

    sizes = (2 * INLINE_ELEMENTS + 1001, INLINE_ELEMENTS, 300, 1, 0)
    params = [nn.Parameter(torch.zeros(n)) for n in sizes]
    sums = [torch.randn(n, generator=torch.Generator().manual_seed(i)) for i, n in enumerate(sizes)]
    for p, s in zip(params, sums, strict=True):
        p.grad = s.clone()
    sigma, c, b = 0.9, 1.1, 20.0
    privatize_gradients(params, noise_multiplier=sigma, max_grad_norm=c, expected_batch_size=b,
                        generator=make_generators(5, n=2, purpose="test"))
    noise = [p.grad - s / b for p, s in zip(params, sums, strict=True)]
    assert all((n != 0).all() for n in noise) and noise[-1].numel() == 0
    first = noise[0]
    for part in (first[:INLINE_ELEMENTS], first[INLINE_ELEMENTS : 2 * INLINE_ELEMENTS],
                 first[2 * INLINE_ELEMENTS :], noise[1]):  # each slice, the short last one included
        lo, hi = _std_interval(part)
        assert lo <= sigma * c / b <= hi


def test_noise_workers_never_open_an_openmp_team():
    """A pool thread that runs a parallel ATen op starts an OpenMP team of its own; libgomp then manages
    more threads than cores and throttles every team's spin-wait, which made each later op of the
    training thread ~40 us slower.  Such a team's workers show up as new OS threads that are not
    Python threads (the pool's own threads are, and the pool may add one lazily)."""
    import os
    import threading

    from trainer.noise import INLINE_ELEMENTS, make_generators

    if torch.get_num_threads() < 2 or not os.path.isdir("/proc/self/task"):
        pytest.skip("needs Linux and an OpenMP team of 2 or more threads")

    def native_threads() -> int:
        return len(os.listdir("/proc/self/task")) - len(threading.enumerate())

    gens = make_generators(5, n=2, purpose="test")
    warm = [nn.Parameter(torch.zeros(10)) for _ in range(2)]
    privatize_gradients(warm, noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=4.0, generator=gens)
    torch.ones(4 * INLINE_ELEMENTS).mul_(2.0)  # the training thread's own team
    before = native_threads()
    params = [nn.Parameter(torch.zeros(n)) for n in (3 * INLINE_ELEMENTS, 2 * INLINE_ELEMENTS + 7)]
    privatize_gradients(params, noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=4.0, generator=gens)
    add_noise_to_sums(params, noise_multiplier=1.0, max_grad_norm=1.0, generator=gens)
    privatize_gradients(params, noise_multiplier=0.0, max_grad_norm=1.0, expected_batch_size=4.0, generator=gens)
    assert native_threads() == before


def test_noise_is_added_once_per_logical_batch_not_per_micro_batch():
    """With a negligible C, the step's gradient is pure noise: std σC/(qN) whatever the micro-batching."""
    model = tiny_llama(dtype=torch.float32)
    seen = []

    def grab(opt, *_):
        seen.append(torch.cat([p.grad.flatten() for g in opt.param_groups for p in g["params"]]).clone())

    examples = [{"input_ids": list(range(1, 9))} for _ in range(64)]
    cfg = TrainConfig(noise_multiplier=2.0, max_grad_norm=1e-9, expected_batch_size=32, physical_batch_size=4,
                      steps=1, seed=3, insecure_seed=True, progress=False)
    trainer = DPTrainer(model, examples, cfg)
    trainer.optimizer.register_step_pre_hook(grab)
    trainer.train()
    lo, hi = _std_interval(seen[0])
    assert lo <= 2.0 * 1e-9 / 32 <= hi


def test_noise_generator_is_secure_by_default():
    a = PoissonSampler(n_rows=10, sample_rate=0.5)
    b = PoissonSampler(n_rows=10, sample_rate=0.5)
    draws_a = [len(a.sample()) for _ in range(30)]
    draws_b = [len(b.sample()) for _ in range(30)]
    assert draws_a != draws_b  # different secret seeds (fails with probability ~1e-9)
    assert a.state_dict() == {}  # and the state of a secure sampler is never exported


def test_poisson_batch_size_distribution():
    sampler = PoissonSampler(n_rows=1000, sample_rate=0.05, seed=0)
    sizes = torch.tensor([len(sampler.sample()) for _ in range(400)], dtype=torch.float64)
    assert sizes.mean().item() == pytest.approx(50, abs=4 * math.sqrt(47.5 / 400))
    assert sizes.var().item() == pytest.approx(47.5, rel=0.25)  # binomial, not fixed


def test_user_level_sampling_bounds_rows_per_user():
    users = [i % 10 for i in range(200)]  # 10 users with 20 rows each
    sampler = PoissonSampler(n_rows=200, sample_rate=0.5, units=users, max_rows_per_unit=3, seed=0)
    assert sampler.n_units == 10 and sampler.privacy_unit == "user"
    for _ in range(50):
        for unit in sampler.sample():
            assert len(unit) == 3 and len({users[r] for r in unit}) == 1


def test_micro_batches_never_split_a_unit():
    batch = [[0, 1], [2], [3, 4, 5], [6]]
    mbs = micro_batches(batch, 3)
    assert mbs == [[[0, 1], [2]], [[3, 4, 5]], [[6]]]


def test_micro_batches_put_rows_of_like_length_together():
    """Longest unit first (by its longest row), ties in sample order: less padding per forward."""
    cost = [10, 100, 11, 101, 50, 12]
    batch = [[0], [1], [2], [3, 4], [5]]
    mbs = micro_batches(batch, 2, row_cost=cost)
    assert mbs == [[[3, 4]], [[1], [5]], [[2], [0]]]
    assert sorted(r for mb in mbs for u in mb for r in u) == list(range(6))  # every row once

    def padded(mbs):
        return sum(max(cost[r] for u in mb for r in u) * sum(map(len, mb)) for mb in mbs)

    assert padded(mbs) < padded(micro_batches(batch, 2))
    tied = [[0], [1], [2]]
    assert micro_batches(tied, 2, row_cost=[5, 5, 5]) == micro_batches(tied, 2)  # equal costs: sample order


def test_sampler_must_be_the_one_the_accountant_assumes():
    from trainer import ConfigError
    from trainer.sampling import check_sampler

    sampler = PoissonSampler(n_rows=100, sample_rate=0.1, seed=0)
    check_sampler(sampler, grouped=False, sample_rate=0.1)
    with pytest.raises(ConfigError, match="is not the accounted q"):
        check_sampler(sampler, grouped=False, sample_rate=0.2)
    with pytest.raises(ConfigError, match="privacy unit is a group of rows"):
        check_sampler(sampler, grouped=True, sample_rate=0.1)

    class Shuffler:
        mechanism, privacy_unit, sample_rate = "shuffle", "example", 0.1

    with pytest.raises(ConfigError, match="assumes Poisson sampling"):
        check_sampler(Shuffler(), grouped=False, sample_rate=0.1)
