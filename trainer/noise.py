"""Gaussian noise for DP-SGD, added once per logical batch."""

from __future__ import annotations

import secrets
from typing import Iterable

import torch
from torch import nn


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch.Generator seeded from the OS's secure random source, or from ``seed`` (tests only)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(secrets.randbits(63) if seed is None else int(seed))
    return gen


@torch.no_grad()
def privatize_gradients(
    params: Iterable[nn.Parameter],
    *,
    noise_multiplier: float,
    max_grad_norm: float,
    expected_batch_size: float,
    generator: torch.Generator,
) -> None:
    """Turn the clipped gradient sums in ``p.grad`` into the noisy mean the optimizer steps on.

    4) add N(0, (noise_multiplier * max_grad_norm)^2) to every coordinate of the sum
    5) divide by the *expected* batch size (q * N units under Poisson sampling), so the
       estimate is unbiased whatever batch size was actually drawn, and the noise
       does not depend on it.
    A parameter with no gradient this step (an empty Poisson batch) still gets noise.
    """
    if expected_batch_size <= 0:
        raise ValueError(f"expected_batch_size must be > 0, got {expected_batch_size}")
    std = float(noise_multiplier) * float(max_grad_norm)
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        if std > 0:
            noise_dtype = p.dtype if p.dtype in (torch.float32, torch.float64) else torch.float32
            noise = torch.empty(p.shape, dtype=noise_dtype, device=p.device)
            noise.normal_(0.0, std, generator=generator)
            p.grad.add_(noise.to(p.grad.dtype))
        p.grad.div_(expected_batch_size)
