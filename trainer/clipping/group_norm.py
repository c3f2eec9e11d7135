"""nn.GroupNorm (affine): a per-channel scale and shift over (B, C, *spatial) inputs.

The per-unit gradients are small (U x C each), so they are instantiated like the other
norms' (see ``norms.py``): the weight and bias are handed to the computation expanded to
one copy per row, (B, C, 1, ..), and the backward of that expansion delivers exactly the
per-row gradients.  The normalisation itself uses each row's own statistics: GroupNorm
never mixes rows (unlike BatchNorm, which the engine refuses in train mode).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .norms import _PerRowFn
from .registry import register_layer


@register_layer(nn.GroupNorm, handles=("weight", "bias"), layout="channels")
def group_norm_forward(module: nn.GroupNorm, call, x):
    out = F.group_norm(x, module.num_groups, None, None, module.eps)
    if not module.affine:
        return out
    spatial = (1,) * (x.dim() - 2)
    trainable = [n for n in ("weight", "bias") if getattr(module, n).requires_grad]
    # (C,) viewed as (C, 1, ..): _PerRowFn expands it to (B, C, 1, ..); the view passes no gradient back
    views = [getattr(module, n).view(-1, *spatial) for n in trainable]
    per_row = dict(zip(trainable, _PerRowFn.apply(call, tuple(trainable), x.dim(), *views), strict=True))
    weight = per_row.get("weight", module.weight.view(-1, *spatial))
    bias = per_row.get("bias", module.bias.view(-1, *spatial))
    return out * weight + bias
