"""Elementwise scales and shifts: nn.LayerNorm, nn.RMSNorm and the RMSNorm family of HF.

Their per-sample gradients are tiny (B x d), so they are simply instantiated:
the parameter is handed to the computation expanded to one copy per row,
(B, 1, ..., d), and the backward of that expansion receives exactly the per-row
gradients, which go to the engine instead of being summed.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UnsupportedLayerError
from ._autocast import acc_dtype
from .registry import register_family, register_layer


class _PerRowFn(torch.autograd.Function):
    """(params...) -> each expanded to (B, 1.., *shape); backward delivers per-row grads."""

    @staticmethod
    def forward(ctx, call, names, ndim, *params):
        ctx.call, ctx.names = call, names
        ctx.dtypes = [p.dtype for p in params]
        outs = []
        for p in params:
            lead = [1] * (ndim - 1 - p.dim())
            outs.append(p.reshape(1, *lead, *p.shape).expand(call.n_rows, *lead, *p.shape).clone())
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        reps = {}
        for name, g, dt in zip(ctx.names, grads, ctx.dtypes, strict=True):
            ctx.call.check_rows(g)
            acc = acc_dtype(dt)
            reps[name] = ctx.call.dense(g.reshape(g.shape[0], -1).to(acc), acc_dtype=acc)
        ctx.call.deliver(reps)
        return (None, None, None) + tuple(None for _ in grads)


def _per_row(call, module, x, names):
    trainable = [n for n in names if getattr(module, n) is not None and getattr(module, n).requires_grad]
    outs = _PerRowFn.apply(call, tuple(trainable), x.dim(), *(getattr(module, n) for n in trainable))
    return dict(zip(trainable, outs, strict=True))


@register_layer(nn.LayerNorm, handles=("weight", "bias"))
def layer_norm_forward(module: nn.LayerNorm, call, x):
    per_row = _per_row(call, module, x, ("weight", "bias"))
    weight = per_row.get("weight", module.weight)
    bias = per_row.get("bias", module.bias)
    out = F.layer_norm(x, module.normalized_shape, None, None, module.eps)
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


@contextlib.contextmanager
def _swapped(module: nn.Module, tensors: dict):
    """Temporarily replace registered parameters by plain tensors (as torch.func does)."""
    saved = {n: module._parameters.pop(n) for n in tensors}
    try:
        for n, t in tensors.items():
            object.__setattr__(module, n, t)
        yield
    finally:
        for n in tensors:
            module.__dict__.pop(n, None)
        module._parameters.update(saved)


def _scale_forward(module, call, x, *args, **kwargs):
    per_row = _per_row(call, module, x, ("weight",))
    with _swapped(module, per_row):
        out = call.original(x, *args, **kwargs)
    if out.shape != x.shape:
        raise UnsupportedLayerError(
            f"module {call.module_name} ({type(module).__name__}) is not an elementwise scale: its output "
            f"shape {tuple(out.shape)} differs from its input {tuple(x.shape)}. Freeze it or register a rule."
        )
    return out


def _is_rms_norm(module: nn.Module) -> bool:
    """HF's many *RMSNorm classes: one 1-D `weight`, no children, elementwise over the last dim."""
    own = dict(module.named_parameters(recurse=False))
    return (
        type(module).__name__.endswith("RMSNorm")
        and set(own) == {"weight"}
        and own["weight"].dim() == 1
        and not any(True for _ in module.children())
    )


if hasattr(nn, "RMSNorm"):

    @register_layer(nn.RMSNorm, handles=("weight",))
    def rms_norm_forward(module: nn.RMSNorm, call, x):
        out = F.rms_norm(x, module.normalized_shape, None, module.eps)
        per_row = _per_row(call, module, x, ("weight",))
        return out * per_row["weight"] if "weight" in per_row else out

register_family(_is_rms_norm, handles=("weight",))(_scale_forward)
