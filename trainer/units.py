"""Map the rows of a micro-batch to privacy units (examples or users).

A unit's gradient is the sum over all its rows, so per-unit norms are taken over
the concatenation of its rows' tokens.  Example-level privacy is the identity map.
"""

from __future__ import annotations

import torch
from torch import Tensor


class UnitPlan:
    """Rows -> units for one micro-batch.  ``unit_index[b]`` is the unit of row b (0..U-1)."""

    def __init__(self, n_rows: int, unit_index: Tensor | None = None, device=None):
        self.n_rows = n_rows
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
