"""The per_layer clip of an instantiated Linear gradient (``trainer/clipping/grads.clip_instantiated``: per-unit
gradients by bmm, their norms, the clipped sum by GEMV) on the Llama bench's shapes (B = 8, T = 256) at several
``CHUNK_FLOATS``, beside the summed (non-private) weight-gradient GEMM; milliseconds, one process.

    .venv/bin/python bench/linear_clip_chunks.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import trainer.clipping.grads as G  # noqa: E402
from trainer.engine import clip_factors  # noqa: E402

SHAPES = [(512, 512), (1344, 512), (512, 1344), (8192, 512)]  # attention, MLP up / down, LM head
CHUNKS = (8 << 20, 2 << 20, 1 << 20, 256 << 10)


def ms(fn, reps=10):
    fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps * 1e3


def one_shape(batch: int, tokens: int, r: int, c: int) -> str:
    rows, cols = torch.randn(batch, tokens, r), torch.randn(batch, tokens, c)
    rep = G.FactoredGrad(rows=rows, cols=cols, method="instantiate")
    line = f"{r:5d} x {c:4d}: summed GEMM {ms(lambda: rows.flatten(0, 1).t() @ cols.flatten(0, 1)):6.1f} ms"
    default = G.CHUNK_FLOATS
    try:
        for chunk in CHUNKS:
            G.CHUNK_FLOATS = chunk
            line += f" | chunk {chunk >> 10}K floats {ms(lambda: G.clip_instantiated(rep, 1.0, clip_factors, None)):6.1f}"
    finally:
        G.CHUNK_FLOATS = default
    return line


def main() -> None:
    torch.manual_seed(0)
    for r, c in SHAPES:
        print(one_shape(8, 256, r, c), flush=True)


if __name__ == "__main__":
    main()
