"""nn.Embedding, token and position embeddings.

The per-unit gradient is G_u = sum_t onehot(id_t) g_t^T: a FactoredGrad whose
rows are token ids.  Its norm is always taken with the ghost identity
sum_{t,s} [id_t == id_s] <g_t, g_s>; its clipped sum is one index_add.

Position ids often come as (1, T) and broadcast over the batch, which would sum
the batch inside the lookup.  While capturing, such ids are expanded to (B, T)
so the output gradient stays per row.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UnsupportedLayerError
from ._autocast import acc_dtype
from .registry import register_layer


class _EmbeddingFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ids, weight, call, padding_idx):
        ctx.save_for_backward(ids)
        ctx.call, ctx.padding_idx = call, padding_idx
        ctx.vocab, ctx.param_dtype = weight.shape[0], weight.dtype
        return F.embedding(ids, weight, padding_idx)

    @staticmethod
    def backward(ctx, g):
        (ids,) = ctx.saved_tensors
        call = ctx.call
        call.check_rows(ids)
        n = ids.shape[0]
        ids2 = ids.reshape(n, -1)  # (B, T)
        g3 = g.reshape(n, -1, g.shape[-1])  # (B, T, d)
        if ctx.padding_idx is not None:  # the padding row gets no gradient
            g3 = g3 * (ids2 != ctx.padding_idx).unsqueeze(-1).to(g3.dtype)
        acc = acc_dtype(ctx.param_dtype)
        call.deliver({"weight": call.factored(ids2, g3, acc_dtype=acc, n_rows=ctx.vocab)})
        return None, None, None, None


@register_layer(nn.Embedding, handles=("weight",))
def embedding_forward(module: nn.Embedding, call, ids):
    if module.max_norm is not None or module.scale_grad_by_freq or module.sparse:
        raise UnsupportedLayerError(
            f"nn.Embedding with max_norm, scale_grad_by_freq or sparse=True is not supported "
            f"(module {call.module_name}); use a plain embedding or freeze it."
        )
    if ids.shape[0] == 1 and call.n_rows > 1:
        ids = ids.expand(call.n_rows, *ids.shape[1:])  # (1, T) position ids -> (B, T)
    return _EmbeddingFn.apply(ids, module.weight, call, module.padding_idx)
