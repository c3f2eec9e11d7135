"""What one row's loss is: the trainer's objective seam.

DPTrainer samples privacy units, splits them into micro-batches and clips per unit; an
objective says how a micro-batch of examples becomes model inputs (``collate``) and what
each row's loss is (``row_losses``).  Two objectives:

* :class:`CausalLM` -- next-token loss with a per-token mask (the default; records, text).
* :class:`Diffusion` -- denoising (ε-prediction) MSE per image for diffusers UNets, with a
  timestep and noise drawn per row from the trainer's own generator.  With noise
  multiplicity K (DPDM), each image becomes K rows of the *same* unit, each weighted 1/K:
  the unit's gradient is the average over its K draws and its sensitivity is unchanged.

A row of weight 0 ("ghost" row) carries no gradient: the trainer appends one when the engine
finds the row dimension ambiguous (a micro-batch of B rows where a layer also sees B
positions), which changes B without changing any unit's gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .batching import collate as collate_tokens
from .batching import per_row_loss


@dataclass
class Batch:
    """One micro-batch: model inputs, the row -> unit map, and each row's loss weight."""

    inputs: dict[str, Tensor]
    unit_index: Tensor | None  # (rows,) row -> unit (0..U-1); None when every row is its own unit
    n_rows: int
    n_units: int
    n_items: int  # tokens (LM) or images, for the throughput figure
    extra: dict[str, Any] = field(default_factory=dict)


class Objective(Protocol):
    rows_per_example: int

    def setup(self, generator: torch.Generator) -> None: ...

    def collate(self, examples: Sequence[Mapping], units: list[list[int]], *, user_level: bool,
                ghost_rows: int = 0) -> Batch: ...

    def row_losses(self, model: nn.Module, batch: Batch, device: torch.device) -> Tensor: ...


def _unit_index(rows_of_units: list[int], ghost_rows: int) -> tuple[Tensor | None, int]:
    """unit_index for units of the given row counts, plus one unit per ghost row (None when trivial)."""
    counts = list(rows_of_units) + [1] * ghost_rows
    if all(c == 1 for c in counts):
        return None, len(counts)
    return torch.tensor([u for u, c in enumerate(counts) for _ in range(c)]), len(counts)


class CausalLM:
    """Mean next-token NLL over each row's scored tokens (``loss_mask`` 0: prompt, no loss)."""

    rows_per_example = 1

    def __init__(self, pad_token_id: int = 0):
        self.pad_token_id = pad_token_id

    def setup(self, generator: torch.Generator) -> None:  # deterministic: no draws
        pass

    def collate(self, examples, units, *, user_level, ghost_rows=0) -> Batch:
        if ghost_rows:  # a copy of the first row, weight 0
            examples = list(examples) + [examples[units[0][0]]] * ghost_rows
            units = units + [[len(examples) - ghost_rows + i] for i in range(ghost_rows)]
        mb = collate_tokens(examples, units, pad_token_id=self.pad_token_id, user_level=user_level or bool(ghost_rows))
        weight = torch.ones(mb.input_ids.shape[0])
        if ghost_rows:
            weight[-ghost_rows:] = 0
        return Batch(inputs={"input_ids": mb.input_ids, "attention_mask": mb.attention_mask},
                     unit_index=mb.unit_index, n_rows=mb.input_ids.shape[0], n_units=len(units),
                     n_items=int(mb.attention_mask[: mb.input_ids.shape[0] - ghost_rows].sum()),
                     extra={"loss_mask": mb.loss_mask, "weight": weight})

    def row_losses(self, model, batch, device) -> Tensor:
        ids = batch.inputs["input_ids"].to(device)
        out = model(input_ids=ids, attention_mask=batch.inputs["attention_mask"].to(device))
        logits = out.logits if hasattr(out, "logits") else out
        return per_row_loss(logits, ids, batch.extra["loss_mask"].to(device)) * batch.extra["weight"].to(device)


class Diffusion:
    """ε-prediction MSE of a diffusers UNet, per image, averaged over ``multiplicity`` draws.

    Examples hold ``pixel_values`` (C, H, W) in [-1, 1], and optionally ``class_labels`` (int)
    or ``encoder_hidden_states`` (L, D) with ``encoder_attention_mask`` (L,) (caption embeddings
    for a UNet2DConditionModel).  ``scheduler`` is a diffusers noise scheduler (default:
    DDPMScheduler with 1000 steps).

    Classifier-free guidance training: with ``condition_dropout`` p, each row's condition is
    replaced by ``null_condition`` (e.g. the empty caption's embeddings) with probability p,
    drawn per row from the trainer's generator.  Rows stay rows of their unit, so the
    sensitivity is unchanged.
    """

    CONDITIONS = ("class_labels", "encoder_hidden_states", "encoder_attention_mask")

    def __init__(self, scheduler=None, *, multiplicity: int = 1, condition_dropout: float = 0.0,
                 null_condition: Mapping[str, Tensor] | None = None):
        if not isinstance(multiplicity, int) or multiplicity < 1:
            raise ValueError(f"multiplicity must be an integer >= 1, got {multiplicity!r}")
        if not 0.0 <= condition_dropout < 1.0:
            raise ValueError(f"condition_dropout must be in [0, 1), got {condition_dropout!r}")
        if condition_dropout and not null_condition:
            raise ValueError("condition_dropout needs null_condition: what a dropped condition becomes")
        self.condition_dropout = condition_dropout
        self.null_condition = {k: torch.as_tensor(v) for k, v in (null_condition or {}).items()}
        if scheduler is None:
            from diffusers import DDPMScheduler

            scheduler = DDPMScheduler(num_train_timesteps=1000)
        self.scheduler = scheduler
        self.rows_per_example = multiplicity
        self._gen: torch.Generator | None = None

    def setup(self, generator: torch.Generator) -> None:
        self._gen = generator

    def collate(self, examples, units, *, user_level, ghost_rows=0) -> Batch:
        if self._gen is None:
            raise RuntimeError("Diffusion.setup(generator) was not called (DPTrainer does it)")
        k = self.rows_per_example
        picked = [examples[i] for unit in units for i in unit for _ in range(k)]
        picked += [examples[units[0][0]]] * ghost_rows
        x0 = torch.stack([torch.as_tensor(e["pixel_values"]) for e in picked]).float()
        n, real = x0.shape[0], x0.shape[0] - ghost_rows
        steps = self.scheduler.config.num_train_timesteps
        # ghost rows draw nothing (t = 0, no noise): the real rows' draws do not depend on them
        t = torch.cat([torch.randint(0, steps, (real,), generator=self._gen), torch.zeros(ghost_rows, dtype=torch.long)])
        noise = torch.cat([torch.randn((real, *x0.shape[1:]), generator=self._gen), torch.zeros_like(x0[real:])])
        inputs = {"noisy": self.scheduler.add_noise(x0, noise, t), "timestep": t}
        if "class_labels" in picked[0]:
            inputs["class_labels"] = torch.tensor([int(e["class_labels"]) for e in picked])
        if "encoder_hidden_states" in picked[0]:
            inputs["encoder_hidden_states"] = torch.stack([torch.as_tensor(e["encoder_hidden_states"])
                                                           for e in picked]).float()
        if "encoder_attention_mask" in picked[0]:
            inputs["encoder_attention_mask"] = torch.stack([torch.as_tensor(e["encoder_attention_mask"])
                                                            for e in picked]).bool()
        if self.condition_dropout:
            drop = torch.rand(real, generator=self._gen) < self.condition_dropout
            drop = torch.cat([drop, torch.zeros(ghost_rows, dtype=torch.bool)])
            for key, null in self.null_condition.items():
                if key in inputs and drop.any():
                    inputs[key] = inputs[key].clone()
                    inputs[key][drop] = null.to(inputs[key].dtype)
        weight = torch.full((n,), 1.0 / k)
        if ghost_rows:
            weight[-ghost_rows:] = 0
        unit_index, n_units = _unit_index([len(u) * k for u in units], ghost_rows)
        return Batch(inputs=inputs, unit_index=unit_index, n_rows=n, n_units=n_units,
                     n_items=sum(len(u) for u in units), extra={"noise": noise, "weight": weight})

    def row_losses(self, model, batch, device) -> Tensor:
        kw = {k: v.to(device) for k, v in batch.inputs.items() if k in self.CONDITIONS}
        out = model(batch.inputs["noisy"].to(device), batch.inputs["timestep"].to(device), **kw)
        pred = out.sample if hasattr(out, "sample") else out
        mse = F.mse_loss(pred.float(), batch.extra["noise"].to(device), reduction="none").flatten(1).mean(1)
        return mse * batch.extra["weight"].to(device)
