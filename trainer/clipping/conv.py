"""nn.Conv2d: a Linear over unfolded input patches, one "token" per output position.

For y = conv(x, W) the weight's per-row gradient is G_b = sum_p g_p u_p^T, where p runs
over the output positions, g_p (C_out) is the output gradient there and u_p
(C_in * kh * kw) the input patch it saw.  Two ways to get it:

* instantiated directly (default): one *grouped* weight-gradient convolution with the
  batch folded into the channels (groups = B) yields every row's G_b at about the cost
  of the non-private weight gradient (0.8 ms vs 0.76 ms for 16 x 32 channels at 32 x 32 on
  this CPU; unfold + bmm took 3.6 ms), then a DenseGrad;
* factored (when B x C_out x C_in k k would exceed DENSE_LIMIT floats): ``F.unfold``
  patches as the cols and g as the rows of a FactoredGrad, ghost norm or chunked
  instantiation by the cost model.

The bias gradient is sum_p g_p.

Symmetric zero padding is done by the convolutions themselves; other padding (a
non-zero mode, or ``same`` with an even kernel) is applied before the autograd Function
with ``F.pad``, whose backward autograd handles.  ``F.unfold`` and ``reshape`` read any memory layout (channels_last,
non-contiguous), so no layout can make the per-sample factors silently wrong.
``groups != 1`` (depthwise / grouped convs) is refused by name.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UnsupportedLayerError
from ._autocast import acc_dtype, prepare_inputs
from .registry import register_layer

DENSE_LIMIT = 32 * 1024 * 1024  # floats of per-row conv weight gradients held at once (128 MB in fp32)


class _Conv2dFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, call, stride, padding, dilation):
        x, weight, bias = prepare_inputs(ctx, x, weight, bias)
        with torch.autocast(x.device.type, enabled=False):
            out = F.conv2d(x, weight, bias, stride=stride, padding=padding, dilation=dilation)
        ctx.save_for_backward(x, weight)
        ctx.call, ctx.stride, ctx.padding, ctx.dilation = call, stride, padding, dilation
        return out

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        call = ctx.call
        g = g.to(x.dtype)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.nn.grad.conv2d_input(x.shape, weight, g, stride=ctx.stride, padding=ctx.padding,
                                                dilation=ctx.dilation)
        call.check_rows(x)
        n, c_out = g.shape[0], g.shape[1]
        acc = acc_dtype(ctx.param_dtype)
        reps = {}
        g3 = g.reshape(n, c_out, -1)  # (B, C_out, P): reshape copies a channels_last gradient as needed
        if ctx.weight_trainable:
            if n * weight.numel() <= DENSE_LIMIT:
                per_row = _per_row_weight_grads(x, g, weight, ctx.stride, ctx.padding, ctx.dilation)
                reps["weight"] = call.dense(per_row, acc_dtype=acc)
            else:
                patches = F.unfold(x, weight.shape[2:], dilation=ctx.dilation, padding=ctx.padding,
                                   stride=ctx.stride)  # (B, C_in*k*k, P)
                reps["weight"] = call.factored(g3.transpose(1, 2), patches.transpose(1, 2), acc_dtype=acc)
        if ctx.bias_trainable:
            reps["bias"] = call.dense(g3.sum(2, dtype=acc), acc_dtype=acc)
        call.deliver(reps)
        return grad_x, None, None, None, None, None, None


def _per_row_weight_grads(x, g, weight, stride, padding, dilation):
    """(B, C_out, C_in*kh*kw): each row's weight gradient, from one convolution with groups = B."""
    n, c_in = x.shape[:2]
    c_out = g.shape[1]
    shape_only = torch.empty((n * c_out, c_in, *weight.shape[2:]), dtype=x.dtype, device=x.device)
    _, grad_w, _ = torch.ops.aten.convolution_backward(
        g.reshape(1, n * c_out, *g.shape[2:]), x.reshape(1, n * c_in, *x.shape[2:]), shape_only, None,
        list(stride), list(padding), list(dilation), False, [0, 0], n, [False, True, False])
    return grad_w.view(n, c_out, -1)


def _padding(module: nn.Conv2d) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) for F.pad, whatever form the module's padding takes."""
    if module.padding == "valid":
        return (0, 0, 0, 0)
    if module.padding == "same":  # stride 1 only (PyTorch's own rule); even kernels pad more on the right
        pads = []
        for k, d in zip(reversed(module.kernel_size), reversed(module.dilation), strict=True):
            total = d * (k - 1)
            pads += [total // 2, total - total // 2]
        return tuple(pads)
    ph, pw = module.padding
    return (pw, pw, ph, ph)


@register_layer(nn.Conv2d, handles=("weight", "bias"), layout="channels")
def conv2d_forward(module: nn.Conv2d, call, x):
    if module.groups != 1:
        raise UnsupportedLayerError(
            f"module '{call.module_name}' is a grouped convolution (groups={module.groups}): not supported by the "
            "DP engine yet; freeze it, or use groups=1."
        )
    if x.dim() != 4:
        raise UnsupportedLayerError(
            f"module '{call.module_name}' (Conv2d) ran on a {x.dim()}-D input; give it (batch, channels, H, W)."
        )
    left, right, top, bottom = _padding(module)
    if module.padding_mode == "zeros" and left == right and top == bottom:
        padding = (top, left)  # symmetric zero padding: done by the convolution itself, no padded copy kept
    else:
        mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
        x, padding = F.pad(x, (left, right, top, bottom), mode=mode), (0, 0)
    return _Conv2dFn.apply(x, module.weight, module.bias, call, module.stride, padding, module.dilation)
