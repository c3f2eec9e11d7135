"""nn.GroupNorm (affine): a per-channel scale and shift over (B, C, *spatial) inputs.

Forward is PyTorch's own fused group norm, keeping what non-private training keeps (the
input and the (B, groups) mean and 1/std); its fused backward gives the input gradient.
The engine gets each row's gradients, which are small (B x C): weight_b = sum over
positions of g * x̂ (x̂ rebuilt from the saved statistics), bias_b = sum of g.  The
normalisation uses each row's own statistics: GroupNorm never mixes rows (unlike
BatchNorm, which the engine refuses in train mode).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: F401  (F.group_norm: the non-affine path)
from torch import nn

from ._autocast import acc_dtype
from .registry import register_layer


class _GroupNormFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, call, groups: int, eps: float):
        n, c = x.shape[:2]
        hw = x[0, 0].numel()
        x = x.contiguous()  # the fused kernels take one layout; a channels_last input is copied (as F.group_norm does)
        out, mean, rstd = torch.ops.aten.native_group_norm(x, weight, bias, n, c, hw, groups, eps)
        ctx.save_for_backward(x, weight, mean, rstd)  # as non-private training keeps: x and (N, G) stats
        ctx.call, ctx.groups = call, groups
        ctx.trainable = (weight.requires_grad, bias.requires_grad)
        return out

    @staticmethod
    def backward(ctx, g):
        x, weight, mean, rstd = ctx.saved_tensors
        call = ctx.call
        call.check_rows(x)
        n, c = x.shape[:2]
        hw = x[0, 0].numel()
        g = g.contiguous()
        acc = acc_dtype(weight.dtype)
        reps = {}
        if ctx.trainable[0]:  # sum over positions of g * x̂, x̂ rebuilt from the saved statistics
            xhat = (x.reshape(n, ctx.groups, -1) - mean[..., None]) * rstd[..., None]
            reps["weight"] = call.dense((g.reshape(n, c, hw) * xhat.view(n, c, hw)).sum(2, dtype=acc), acc_dtype=acc)
        if ctx.trainable[1]:
            reps["bias"] = call.dense(g.reshape(n, c, hw).sum(2, dtype=acc), acc_dtype=acc)
        call.deliver(reps)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.native_group_norm_backward(
                g, x, mean, rstd, weight, n, c, hw, ctx.groups, [True, False, False])[0]
        return grad_x, None, None, None, None, None


@register_layer(nn.GroupNorm, handles=("weight", "bias"), layout="channels")
def group_norm_forward(module: nn.GroupNorm, call, x):
    if not module.affine:
        return F.group_norm(x, module.num_groups, None, None, module.eps)
    return _GroupNormFn.apply(x, module.weight, module.bias, call, module.num_groups, module.eps)
