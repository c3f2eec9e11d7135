"""Causal-LM micro-batches: padding, the per-token loss mask and the per-row loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class MicroBatch:
    input_ids: Tensor  # (B, T)
    attention_mask: Tensor  # (B, T)
    loss_mask: Tensor  # (B, T): 1 where the token is predicted and scored
    unit_index: Tensor | None  # (B,) row -> unit, None when each row is its own unit
    n_tokens: int  # real (non-pad) tokens


def collate(
    examples: Sequence[Mapping], units: list[list[int]], *, pad_token_id: int, user_level: bool
) -> MicroBatch:
    """Right-pad the rows of ``units`` (lists of example indices) into one micro-batch."""
    rows = [examples[i] for unit in units for i in unit]
    width = max(len(r["input_ids"]) for r in rows)
    if width == len(rows):  # one pad token more: a (B, T) batch with T == B would leave the row dimension ambiguous
        width += 1
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.float32)
    for b, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[b, :n] = torch.as_tensor(r["input_ids"])
        attn[b, :n] = 1
        mask[b, :n] = torch.as_tensor(r["loss_mask"], dtype=torch.float32) if "loss_mask" in r else 1.0
    unit_index = None
    if user_level:
        unit_index = torch.tensor([u for u, unit in enumerate(units) for _ in unit])
    return MicroBatch(ids, attn, mask, unit_index, int(attn.sum()))


def per_row_loss(logits: Tensor, input_ids: Tensor, loss_mask: Tensor) -> Tensor:
    """Mean next-token NLL over each row's scored tokens: (B,).

    Token t+1 is scored when loss_mask[t+1] is 1 (prompt / conditioning tokens carry 0).
    """
    logits = logits[:, :-1].float()  # (B, T-1, V)
    target = input_ids[:, 1:]  # (B, T-1)
    weight = loss_mask[:, 1:].to(logits.dtype)  # (B, T-1)
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none")
    nll = nll.view_as(target) * weight
    return nll.sum(1) / weight.sum(1).clamp(min=1.0)
