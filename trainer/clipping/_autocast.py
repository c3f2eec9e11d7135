"""Autocast for custom Functions: run in the autocast dtype, keep fp32 params."""

from __future__ import annotations

import torch
from torch import Tensor


def compute_dtype(x: Tensor) -> torch.dtype | None:
    """The dtype autocast would run a matmul in on ``x``'s device, or None when it is off."""
    kind = x.device.type
    if kind in ("cuda", "cpu", "xpu", "mps") and torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return None


def acc_dtype(param_dtype: torch.dtype) -> torch.dtype:
    """Per-sample norms and clipped sums are computed at least in fp32."""
    return torch.promote_types(param_dtype, torch.float32)


def prepare_inputs(ctx, x: Tensor, weight: Tensor, bias: Tensor | None):
    """Forward set-up shared by the weight-layer rules: record the parameter dtype and which
    parameters train on ``ctx``, and cast input, weight and bias to autocast's compute dtype."""
    ctx.param_dtype = weight.dtype
    ctx.weight_trainable = weight.requires_grad
    ctx.bias_trainable = bias is not None and bias.requires_grad
    dt = compute_dtype(x)
    if dt is not None:
        x, weight = x.to(dt), weight.to(dt)
        bias = bias.to(dt) if bias is not None else None
    return x, weight, bias
