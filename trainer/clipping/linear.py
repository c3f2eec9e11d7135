"""nn.Linear and Hugging Face's Conv1D (a Linear with a transposed weight).

For y = x W^T + b over T tokens of a unit, the weight's per-unit gradient is
G_u = sum_t g_t x_t^T: a FactoredGrad with rows g (out) and cols x (in).  Conv1D
stores W as (in, out), so its factors swap.  The bias gradient is sum_t g_t.
Backward computes the input gradient as usual and hands the engine the
factors; autograd never forms the summed weight gradient itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._autocast import acc_dtype, prepare_inputs
from .registry import register_layer


class _LinearFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, call, transposed: bool):
        x, weight, bias = prepare_inputs(ctx, x, weight, bias)
        with torch.autocast(x.device.type, enabled=False):
            out = F.linear(x, weight.t() if transposed else weight, bias)
        ctx.save_for_backward(x, weight)
        ctx.call, ctx.transposed = call, transposed
        return out

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        call = ctx.call
        w = weight.t() if ctx.transposed else weight  # (out, in)
        g = g.to(x.dtype)
        grad_x = g.matmul(w) if ctx.needs_input_grad[0] else None
        call.check_rows(x)
        n = x.shape[0]
        x3 = x.reshape(n, -1, x.shape[-1])  # (B, T, in)
        g3 = g.reshape(n, -1, g.shape[-1])  # (B, T, out)
        acc = acc_dtype(ctx.param_dtype)
        reps = {}
        if ctx.weight_trainable:
            rows, cols = (x3, g3) if ctx.transposed else (g3, x3)
            reps["weight"] = call.factored(rows, cols, acc_dtype=acc)
        if ctx.bias_trainable:
            reps["bias"] = call.dense(g3.sum(1, dtype=acc), acc_dtype=acc)
        call.deliver(reps)
        return grad_x, None, None, None, None


@register_layer(nn.Linear, handles=("weight", "bias"))
def linear_forward(module: nn.Linear, call, x):
    return _LinearFn.apply(x, module.weight, module.bias, call, False)


def _conv1d_type():
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # transformers is a dependency, but keep the engine importable without it
        return None
    return Conv1D


_Conv1D = _conv1d_type()
if _Conv1D is not None:

    @register_layer(_Conv1D, handles=("weight", "bias"))
    def conv1d_forward(module, call, x):
        return _LinearFn.apply(x, module.weight, module.bias, call, True)
