"""The clipped, summed gradient of an LM's training rows, grouped into privacy units: the quantity the
neighbouring-data-set tests compare with and without one unit (document or user)."""

from __future__ import annotations

import torch

from trainer import DPEngine


def clipped_sum(model, rows: list[dict], units: list, micro_batches: list[list[int]], clipping: str,
                scale: float = 30.0) -> torch.Tensor:
    """Rows (``input_ids`` + ``loss_mask``) run in the given micro-batches (lists of row indices); the
    loss is scaled so that every unit's gradient is clipped."""
    eng = DPEngine(model, max_grad_norm=1.0, clipping=clipping)
    dtype = next(model.parameters()).dtype
    try:
        for idx in micro_batches:
            ids = [rows[i]["input_ids"] for i in idx]
            width = max(map(len, ids)) + (1 if max(map(len, ids)) == len(ids) else 0)  # T != B
            x = torch.zeros(len(ids), width, dtype=torch.long)
            mask = torch.zeros(len(ids), width, dtype=dtype)
            for b, i in enumerate(idx):
                x[b, : len(rows[i]["input_ids"])] = torch.tensor(rows[i]["input_ids"])
                mask[b, : len(rows[i]["input_ids"])] = torch.tensor(rows[i]["loss_mask"], dtype=dtype)
            unit_of = [units[i] for i in idx]
            keys = list(dict.fromkeys(unit_of))
            unit_index = torch.tensor([keys.index(u) for u in unit_of])
            with eng.micro_batch(len(idx), unit_index, unit_ids=keys):
                logits = model(input_ids=x).logits[:, :-1]
                nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none")
                (nll * mask[:, 1:] * scale).sum().backward()
        return torch.cat([p.grad.flatten() for p in eng.trainable_parameters.values()])
    finally:
        eng.detach()
        model.zero_grad(set_to_none=True)
