"""The model a generator decodes with: its LoRA adapter folded into the weights, in the sampling dtype.

Decoding reads every weight once per generated token, so it is bound by the bytes of the weights
and of the KV cache: a bf16 copy halves both (and CPUs with native bf16, like this project's
``avx512_bf16`` machine, multiply it faster).  Sampling is post-processing of the trained model, so
the dtype costs no privacy; the trained fp32 model itself is never changed.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import torch

SAMPLING_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@contextmanager
def decoding_model(model: torch.nn.Module, dtype: str = "fp32") -> Iterator[torch.nn.Module]:
    """Yield the module to decode with.

    ``fp32``: ``model`` itself, a LoRA adapter merged into its base weights meanwhile (no adapter
    matmuls at every step) and unmerged after.  ``bf16``: a bf16 copy with the adapter folded in,
    dropped after: merging into bf16 weights and back would round the base at every call."""
    if dtype not in SAMPLING_DTYPES:
        raise ValueError(f"sampling dtype must be one of {sorted(SAMPLING_DTYPES)}, got {dtype!r}")
    if dtype == "fp32":
        merged = hasattr(model, "merge_adapter")
        if merged:
            model.merge_adapter()
        try:
            yield model
        finally:
            if merged:
                model.unmerge_adapter()
        return
    low = copy.deepcopy(model)
    if hasattr(low, "merge_and_unload"):  # a peft model: fold the adapter in at fp32, then round once
        low = low.merge_and_unload()
    # parameters only: buffers such as RoPE's inv_freq keep fp32 (rounded to bf16's 8 bits, a frequency
    # near 0.75 is off by up to 0.2%, so its angle at position 200 by up to ~0.3 rad)
    for p in low.parameters():
        p.requires_grad_(False)
        p.data = p.data.to(SAMPLING_DTYPES[dtype])
    yield low.eval()
