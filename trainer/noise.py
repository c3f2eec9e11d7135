"""Gaussian noise for DP-SGD, added once per logical batch."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Sequence

import torch
from torch import Tensor, nn

from .seeds import stream_seed


def make_generator(seed: int | None, device: torch.device | str = "cpu", *, purpose: str) -> torch.Generator:
    """A torch.Generator on its own stream: the OS's secure random source, or derived from
    ``seed`` and ``purpose`` (an insecure, reproducible run: see trainer.seeds)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(stream_seed(seed, purpose))
    return gen


def make_generators(seed: int | None, device: torch.device | str = "cpu", n: int | None = None, *,
                    purpose: str = "noise") -> list[torch.Generator]:
    """Independent generators, one per noise worker: several CPU threads, one on an accelerator.

    Each gets its own secure seed (or one derived from ``seed`` for ``purpose:i``), so their
    streams are independent of each other and of the sampler's.
    """
    if n is None:
        n = 1 if torch.device(device).type != "cpu" else max(1, min(4, os.cpu_count() or 1))
    return [make_generator(seed, device, purpose=f"{purpose}:{i}") for i in range(n)]


@torch.no_grad()
def privatize_gradients(
    params: Iterable[nn.Parameter],
    *,
    noise_multiplier: float,
    max_grad_norm: float,
    expected_batch_size: float,
    generator: torch.Generator | Sequence[torch.Generator],
) -> None:
    """Turn the clipped gradient sums in ``p.grad`` into the noisy mean the optimizer steps on.

    4) add N(0, (noise_multiplier * max_grad_norm)^2) to every coordinate of the sum
    5) divide by the *expected* batch size (q * N units under Poisson sampling), so the
       estimate is unbiased whatever batch size was actually drawn, and the noise
       does not depend on it.
    A parameter with no gradient this step (an empty Poisson batch) still gets noise.
    Given several generators, parameters are split between them (by size, in a fixed
    order) and filled on parallel threads: sampling normals is a large share of a CPU step.
    """
    if expected_batch_size <= 0:
        raise ValueError(f"expected_batch_size must be > 0, got {expected_batch_size}")
    std = float(noise_multiplier) * float(max_grad_norm) / expected_batch_size
    _noise_and_scale(list(params), std=std, divisor=expected_batch_size, generator=generator)


@torch.no_grad()
def add_noise_to_sums(params: Iterable[nn.Parameter], *, noise_multiplier: float, max_grad_norm: float,
                      generator: torch.Generator | Sequence[torch.Generator]) -> None:
    """Add N(0, (noise_multiplier * max_grad_norm)^2) to every coordinate of the clipped sums in
    ``p.grad`` without dividing (the data-parallel road: rank 0 noises its local sum before the
    all-reduce, trainer/distributed.py)."""
    _noise_and_scale(list(params), std=float(noise_multiplier) * float(max_grad_norm), divisor=None,
                     generator=generator)


# ATen runs an elementwise op on fewer elements than its grain size (at::internal::GRAIN_SIZE,
# 32,768) inline on the calling thread; on more, it opens an OpenMP team.  A pool thread that opens
# a team leaves libgomp managing more threads than there are cores, and from then on it throttles
# the spin-wait of every team in the process: each later parallel op of the training thread paid
# ~40 us to wake its workers (a 65,536-float multiply: 11 -> 55 us; the DP UNet step ran ~25%
# slower, AdamW's step 3x).  So the pool threads work in slices of this size and never open a team.
# (normal_ on CPU is serial whatever its size: it never opens one.)
INLINE_ELEMENTS = 32_768


def _noise_and_scale(params: list[nn.Parameter], *, std: float, divisor: float | None,
                     generator: torch.Generator | Sequence[torch.Generator]) -> None:
    gens = [generator] if isinstance(generator, torch.Generator) else list(generator)
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p, memory_format=torch.contiguous_format)
        elif not p.grad.is_contiguous():
            p.grad = p.grad.contiguous()
    pooled = len(gens) > 1
    slice_limit = INLINE_ELEMENTS if pooled else None  # the calling thread takes whole parameters
    shares = _balanced(params, len(gens))
    # Noise buffers are allocated here, on the calling thread: worker threads that
    # allocate get their own malloc arenas, which kept ~100 MB of extra RSS on CPU.
    scratch = [_scratch(share, slice_limit) if std > 0 else {} for share in shares]

    @torch.no_grad()  # grad mode is per thread: a pool thread starts with it on
    def fill(i: int) -> None:
        for p in shares[i]:
            buffer = scratch[i].get((_noise_dtype(p), p.device))
            for part in _slices(p.grad.view(-1), slice_limit):
                if std > 0:
                    noise = buffer[: part.numel()]
                    noise.normal_(0.0, std, generator=gens[i])
                    _add_noise(part, noise, divisor)
                elif divisor is not None:
                    part.div_(divisor)

    if pooled:
        list(_pool(len(gens)).map(fill, range(len(gens))))
    else:
        fill(0)


def _slices(flat: Tensor, limit: int | None) -> list[Tensor]:
    """``flat`` whole, or in consecutive views of at most ``limit`` elements (an empty tensor: one view)."""
    if limit is None or flat.numel() <= limit:
        return [flat]
    return list(flat.split(limit))


def _add_noise(grad: Tensor, noise: Tensor, divisor: float | None) -> None:
    """grad <- noise + grad / divisor, in one pass over grad where the dtypes agree."""
    if noise.dtype == grad.dtype:
        torch.add(noise, grad, alpha=1.0 if divisor is None else 1.0 / divisor, out=grad)
        return
    if divisor is not None:
        grad.div_(divisor)
    grad.add_(noise.to(grad.dtype))


_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}


def _pool(workers: int) -> ThreadPoolExecutor:
    """A thread pool kept for the process: a fresh thread every step cost more than the parallel
    fill saves on a small model (1.1 M parameters: 15 vs 9 ms).  Keyed by process id, so a forked
    child (a torchrun or DataLoader worker) never inherits a pool whose threads did not survive the
    fork."""
    key = (os.getpid(), workers)
    if key not in _POOLS:
        _POOLS[key] = ThreadPoolExecutor(workers, thread_name_prefix="dp-noise")
    return _POOLS[key]


def _balanced(params: list[nn.Parameter], n: int) -> list[list[nn.Parameter]]:
    """Split params into n shares of similar total size, deterministically."""
    shares: list[list[nn.Parameter]] = [[] for _ in range(n)]
    load = [0] * n
    for p in sorted(params, key=lambda q: -q.numel()):  # sorted() is stable: ties keep model order
        i = load.index(min(load))
        shares[i].append(p)
        load[i] += p.numel()
    return shares


def _noise_dtype(p: nn.Parameter) -> torch.dtype:
    return p.grad.dtype if p.grad.dtype in (torch.float32, torch.float64) else torch.float32


def _scratch(share: list[nn.Parameter], limit: int | None) -> dict:
    """One buffer per (dtype, device), as large as the share's largest parameter (or ``limit``)."""
    sizes: dict = {}
    for p in share:
        key = (_noise_dtype(p), p.device)
        sizes[key] = max(sizes.get(key, 0), p.numel() if limit is None else min(limit, p.numel()))
    return {key: torch.empty(n, dtype=key[0], device=key[1]) for key, n in sizes.items()}
