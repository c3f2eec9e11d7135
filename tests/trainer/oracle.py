"""A slow, obviously-correct reference for clipped gradient sums.

Each privacy unit's gradient is computed by its own forward/backward in fp64 on a
copy of the model with no engine attached; then it is clipped by the textbook
rule and summed.  Fused results are compared against this.
"""

from __future__ import annotations

import copy
import math
from typing import Callable, Sequence

import torch
from torch import nn


def per_unit_grads(model: nn.Module, loss_fn: Callable, rows: torch.Tensor, units: Sequence[Sequence[int]], names):
    """{param name: grad} for each unit, from one backward per unit."""
    ref = copy.deepcopy(model)
    params = dict(ref.named_parameters(remove_duplicate=False))
    out = []
    for unit in units:
        ref.zero_grad(set_to_none=True)
        loss_fn(ref, rows[list(unit)]).sum().backward()
        out.append({n: params[n].grad.detach().clone() for n in names})
    return out


def clipped_sum(per_unit, *, groups, max_grad_norm: float, clipping: str, automatic: bool = False):
    """Textbook clipping of each unit's gradient, per group (per_layer) or whole (flat), then the sum."""
    names = [n for g in groups for n in g]
    total = {n: torch.zeros_like(per_unit[0][n]) for n in names}
    norms = []
    for grad in per_unit:
        if clipping == "flat":
            parts = [(names, max_grad_norm)]
        else:
            parts = [(g, max_grad_norm / math.sqrt(len(groups))) for g in groups]
        for group, c in parts:
            norm = math.sqrt(sum(grad[n].double().pow(2).sum().item() for n in group))
            norms.append(norm / c)
            factor = c / (norm + 0.01) if automatic else min(1.0, c / (norm + 1e-6))
            for n in group:
                total[n] += factor * grad[n]
    return total, norms


def max_rel_err(got: dict, want: dict) -> float:
    """Largest per-parameter relative error.  A parameter whose true gradient is zero up to rounding
    (an attention key bias: softmax ignores a shift shared by all keys) is measured against 1e-9 of
    the whole gradient's norm instead of its own, which is rounding noise."""
    floor = 1e-9 * torch.sqrt(sum(w.double().pow(2).sum() for w in want.values()))
    return max(((got[n] - want[n]).norm() / torch.maximum(want[n].norm(), floor).clamp(min=1e-30)).item()
               for n in want)
