"""Per-row Conv2d weight gradients on the bench UNet's conv shapes: the engine's grouped convolution
(``trainer/clipping/conv._per_row_weight_grads``) against unfold + bmm, beside the summed (non-private)
weight gradient; milliseconds, one process.

    .venv/bin/python bench/conv_per_row.py [BATCH]      # default 16
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from trainer.clipping.conv import _per_row_weight_grads  # noqa: E402

SHAPES = [(3, 32, 32), (32, 3, 32), (32, 32, 32), (64, 64, 16), (64, 64, 8), (96, 64, 16), (32, 64, 16)]


def unfold_bmm(x, g, k, pad):
    patches = F.unfold(x, k, padding=pad)  # (B, C_in k k, P)
    return torch.bmm(g.flatten(2), patches.transpose(1, 2))  # (B, C_out, C_in k k)


def ms(fn, reps=30):
    fn(), fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps * 1e3


def one_shape(batch: int, c_in: int, c_out: int, hw: int) -> str:
    x, g = torch.randn(batch, c_in, hw, hw), torch.randn(batch, c_out, hw, hw)
    w = torch.empty(c_out, c_in, 3, 3)

    def grouped():
        return _per_row_weight_grads(x, g, w, (1, 1), (1, 1), (1, 1))

    def summed():
        return torch.nn.grad.conv2d_weight(x, w.shape, g, padding=1)

    assert torch.allclose(grouped(), unfold_bmm(x, g, 3, 1), atol=1e-3, rtol=1e-4)
    return (f"{c_in:3d} -> {c_out:3d} at {hw} px: grouped {ms(grouped):6.2f} ms, unfold + bmm "
            f"{ms(lambda: unfold_bmm(x, g, 3, 1)):6.2f} ms, summed (non-private) {ms(summed):6.2f} ms")


def main() -> None:
    torch.manual_seed(0)
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    for c_in, c_out, hw in SHAPES:
        print(one_shape(batch, c_in, c_out, hw), flush=True)


if __name__ == "__main__":
    main()
