"""Map the rows of a micro-batch to privacy units (examples or users).

A unit's gradient is the sum over all its rows, so per-unit norms are taken over
the concatenation of its rows' tokens.  Example-level privacy is the identity map.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .errors import AmbiguousRowsError, UnsupportedLayerError


class UnitPlan:
    """Rows -> units for one micro-batch.  ``unit_index[b]`` is the unit of row b (0..U-1)."""

    def __init__(self, n_rows: int, unit_index: Tensor | None = None, device=None):
        self.n_rows = n_rows
        self._seen: list[tuple[str, tuple[int, ...], bool, str]] = []  # (module, input shape, integer?, layout)
        self._layout_checked = False
        if unit_index is None:
            self.n_units, self._slots, self.unit_index = n_rows, None, None
            return
        unit_index = torch.as_tensor(unit_index, dtype=torch.long, device=device)
        if unit_index.shape != (n_rows,):
            raise ValueError(f"unit_index must have shape ({n_rows},), got {tuple(unit_index.shape)}")
        self.unit_index = unit_index
        self.n_units = int(unit_index.max().item()) + 1 if n_rows else 0
        counts = torch.bincount(unit_index, minlength=self.n_units)
        width = int(counts.max().item()) if n_rows else 0
        # slots[u, j] = j-th row of unit u, or n_rows (a zero padding row).
        order = torch.argsort(unit_index, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(n_rows, device=unit_index.device) - starts[unit_index[order]]
        slots = torch.full((self.n_units, width), n_rows, dtype=torch.long, device=unit_index.device)
        slots[unit_index[order], rank] = order
        self._slots = slots

    def observe(self, module_name: str, t: Tensor | None, *, layout: str = "sequence") -> None:
        """Record the shape of a hooked module's input (checked once backward starts)."""
        if t is not None:
            self._seen.append((module_name, tuple(t.shape), not t.is_floating_point(), layout))

    def check_layout(self) -> None:
        """Refuse a micro-batch whose row dimension is not certain.

        Rules take dimension 0 as the rows.  When dimension 1 (a sequence-first layout's batch
        dimension, or the sequence of a batch-first one) also has ``n_rows`` entries, a
        sequence-first tensor or 1-D position ids would be clipped per position instead of per
        row, and nothing in the shapes tells the two apart; so the micro-batch is refused.
        DPTrainer pads such batches by one token so this never happens there.
        """
        if self._layout_checked:
            return
        self._layout_checked = True
        if self.n_rows <= 1:
            return
        for name, shape, integer, layout in self._seen:
            feature_dims = 0 if integer else 1  # a float input's last dimension holds features
            if layout == "sequence" and len(shape) - feature_dims >= 2 and shape[1] == self.n_rows:
                raise AmbiguousRowsError(
                    f"module '{name}' ran on a tensor of shape {shape} in a micro-batch of {self.n_rows} rows: its "
                    f"dimension 1 also has {self.n_rows} entries, so it is not certain which dimension holds the "
                    "rows (a sequence-first layout, or a sequence as long as the batch). Keep the batch dimension "
                    "first and make the sequence length differ from the number of rows (pad one token)."
                )
            if not integer and len(shape) < 2:
                raise UnsupportedLayerError(
                    f"module '{name}' ran on a 1-D tensor of shape {shape}: no batch dimension. Keep the rows in "
                    "dimension 0 of every input."
                )

    @property
    def identity(self) -> bool:
        return self._slots is None

    def tokens(self, t: Tensor) -> Tensor:
        """(B, T, ...) per-row token tensor -> (U, k*T, ...), zero-padded."""
        if self.identity:
            return t
        padded = torch.cat([t, torch.zeros_like(t[:1])])  # row B is the padding row
        grouped = padded[self._slots]  # (U, k, T, ...)
        return grouped.flatten(1, 2)

    def dense(self, t: Tensor) -> Tensor:
        """(B, ...) per-row gradient -> (U, ...) per-unit sum."""
        if self.identity:
            return t
        out = torch.zeros((self.n_units, *t.shape[1:]), dtype=t.dtype, device=t.device)
        return out.index_add_(0, self.unit_index.to(t.device), t)
