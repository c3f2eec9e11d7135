"""Independent random streams, one per purpose, from one optional seed.

With no seed every stream starts from the OS's secure random source.  With a seed
(an explicit, insecure switch: whoever knows it can recompute all the noise), each
purpose ("sampler", "noise:0", "histogram", ...) gets its own seed derived by
SHA-256, so no two mechanisms ever share a stream.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets


def stream_seed(seed: int | None, purpose: str) -> int:
    """A 63-bit seed for ``purpose``: secure random when ``seed`` is None, else derived from it."""
    if seed is None:
        return secrets.randbits(63)
    digest = hashlib.sha256(f"dpsynth:{int(seed)}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def numpy_rng(seed: int | None, purpose: str):
    """A numpy Generator on its own stream (secure random when ``seed`` is None)."""
    import numpy as np

    return np.random.default_rng(secrets.randbits(128) if seed is None else stream_seed(seed, purpose))


@contextlib.contextmanager
def seeded_torch(seed: int | None, purpose: str):
    """Run a block (a model's construction: random init, LoRA's A matrices) on torch's global
    generator seeded for ``purpose`` and then restore the caller's state, so a run with a seed builds
    the same initial model every time.  Without a seed the block runs on the caller's generator as it
    is (the init is data-independent and need not be secret: only the noise streams must be)."""
    if seed is None:
        yield
        return
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed(seed, purpose))
        yield
