"""Per-unit gradient representations and the three operations DP-SGD needs on them.

A layer's backward hands the engine one *representation* per trainable parameter
(per use of it: a tied weight is used twice).  The engine never asks for the
per-sample gradient itself; it asks for

* ``norm_sq``      -- per-unit squared norm, shape (U,)
* ``inner``        -- per-unit inner product of two uses of the same parameter
* ``weighted_sum`` -- sum_u c_u * G_u, the clipped sum, shaped like the parameter

Two representations cover every supported layer:

* :class:`FactoredGrad` -- G_u = sum_t r_t (x) c_t, an outer-product sum over the
  unit's tokens (Linear, HF Conv1D, Embedding, where r_t is a one-hot token id).
  Its norm is computed either with the *ghost* trick (two T x T Gram matrices,
  never materialising G_u) or by *instantiating* G_u in chunks of units,
  whichever the cost model says is cheaper for this layer's shapes.
* :class:`DenseGrad` -- G_u already materialised, shape (U, *param.shape): biases
  and elementwise scales, where that is cheaper than anything clever.

All arithmetic runs in ``acc_dtype`` (fp32, or fp64 for fp64 models) so clip
factors are exact even when activations are bf16.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

NormMethod = Literal["auto", "ghost", "instantiate"]

# Cost-model constants (see docs/engine.md for how they were calibrated on CPU).
# Instantiating G_u costs ~INSTANTIATE_PASSES memory passes over r*c elements per
# unit on top of the GEMM that autograd would do anyway; ghost costs T^2*(r+c) MACs.
INSTANTIATE_PASSES = 96.0
# Upper bound on the floats one chunk of instantiated per-unit gradients may hold.
CHUNK_FLOATS = 8 * 1024 * 1024


def choose_norm_method(tokens: int, rows: int, cols: int, *, keeps_sum: bool) -> str:
    """Pick ghost or instantiation for a (rows x cols) factored gradient over ``tokens`` per unit.

    ``keeps_sum`` is True when instantiation also yields the clipped sum for free
    (per-layer clipping: the per-unit gradients are summed with their clip factors
    while still in cache); otherwise the sum costs one extra GEMM of T*r*c.
    """
    ghost = float(tokens) ** 2 * (rows + cols)
    inst = INSTANTIATE_PASSES * rows * cols + (0.0 if keeps_sum else float(tokens) * rows * cols)
    return "ghost" if ghost < inst else "instantiate"


def _chunks(n_units: int, floats_per_unit: int):
    step = max(1, CHUNK_FLOATS // max(1, floats_per_unit))
    for start in range(0, n_units, step):
        yield slice(start, min(n_units, start + step))


@dataclass
class DenseGrad:
    """Per-unit gradients already materialised: ``per_unit`` is (U, *param.shape)."""

    per_unit: Tensor

    @property
    def n_units(self) -> int:
        return self.per_unit.shape[0]

    def norm_sq(self) -> Tensor:
        return _row_norm_sq(self.per_unit)

    def weighted_sum(self, factors: Tensor) -> Tensor:
        return (factors.to(self.per_unit.dtype) @ self.per_unit.flatten(1)).view(self.per_unit.shape[1:])


@dataclass
class FactoredGrad:
    """G_u = sum_t rows[u, t] (outer) cols[u, t], in the parameter's own orientation.

    ``rows`` is (U, T, r) dense, or (U, T) integer token ids when ``n_rows`` is
    given (a one-hot row factor: the Embedding case).  ``cols`` is (U, T, c).
    """

    rows: Tensor
    cols: Tensor
    n_rows: int | None = None  # set when rows are ids
    method: str = "ghost"

    @property
    def n_units(self) -> int:
        return self.cols.shape[0]

    @property
    def ids(self) -> bool:
        return self.n_rows is not None

    @property
    def shape(self) -> tuple[int, int]:
        r = self.n_rows if self.ids else self.rows.shape[-1]
        return (r, self.cols.shape[-1])

    # -- instantiation ------------------------------------------------------
    def instantiate(self, units: slice) -> Tensor:
        """Materialise G_u for the units in ``units``: (u, r, c)."""
        if self.ids:
            raise RuntimeError("embedding gradients are never instantiated")
        return torch.bmm(self.rows[units].transpose(1, 2), self.cols[units])  # (u, r, c)

    # -- the three operations ---------------------------------------------
    def norm_sq(self) -> Tensor:
        if self.method == "instantiate" and not self.ids:
            r, c = self.shape
            out = [_row_norm_sq(self.instantiate(sl)) for sl in _chunks(self.n_units, r * c)]
            return torch.cat(out)
        return self.inner(self)

    def inner(self, other: "FactoredGrad") -> Tensor:
        """Per-unit <G_u, G'_u> by the ghost identity sum_{t,s} <r_t, r'_s> <c_t, c'_s>."""
        t, s = self.cols.shape[1], other.cols.shape[1]
        out = []
        for sl in _chunks(self.n_units, t * s * 2):
            k_cols = torch.bmm(self.cols[sl], other.cols[sl].transpose(1, 2))  # (u, T, S)
            k_rows = _row_gram(self, other, sl)  # (u, T, S)
            out.append((k_cols * k_rows).flatten(1).sum(1))
        return torch.cat(out)

    def weighted_sum(self, factors: Tensor) -> Tensor:
        scaled = self.cols * factors.to(self.cols.dtype)[:, None, None]  # (U, T, c)
        if self.ids:
            out = torch.zeros(self.shape, dtype=self.cols.dtype, device=self.cols.device)
            return out.index_add_(0, self.rows.reshape(-1), scaled.reshape(-1, scaled.shape[-1]))
        return self.rows.flatten(0, 1).t() @ scaled.flatten(0, 1)  # (r, U*T) @ (U*T, c)


def clip_instantiated(rep: FactoredGrad, threshold: float, clip_fn, extra_norm_sq: Tensor | None):
    """Instantiate per-unit gradients chunk by chunk, clip each chunk and fold it into the sum.

    ``extra_norm_sq`` (U,) is the rest of the clipping group's squared norm (a bias).
    Returns (clipped sum (r, c), the group's per-unit norms (U,), extra included).
    """
    r, c = rep.shape
    total, norms = None, []
    for sl in _chunks(rep.n_units, r * c):
        g = rep.instantiate(sl)  # (u, r, c)
        n_sq = _row_norm_sq(g)  # (u,)
        full = n_sq if extra_norm_sq is None else n_sq + extra_norm_sq[sl]
        full_norm = full.sqrt()
        part = clip_fn(full_norm, threshold).to(g.dtype) @ g.flatten(1)  # (r*c,): one GEMV
        total = part if total is None else total.add_(part)
        norms.append(full_norm)
    return total.view(r, c), torch.cat(norms)


def _row_norm_sq(t: Tensor) -> Tensor:
    """Squared L2 norm of each t[u], in one pass with no temporary of t's size."""
    return torch.linalg.vector_norm(t.flatten(1), dim=1).square()


def _row_gram(a: FactoredGrad, b: FactoredGrad, sl: slice) -> Tensor:
    """<r_t, r'_s> for all token pairs of each unit in ``sl``: (u, T, S)."""
    if a.ids and b.ids:
        return (a.rows[sl][:, :, None] == b.rows[sl][:, None, :]).to(a.cols.dtype)
    if a.ids:
        return _row_gram(b, a, sl).transpose(1, 2)
    if b.ids:  # dense rows of a against one-hot rows of b: pick a's entries at b's ids
        t, s = a.rows.shape[1], b.rows.shape[1]
        idx = b.rows[sl][:, None, :].expand(-1, t, s)
        return a.rows[sl].gather(2, idx)
    return torch.bmm(a.rows[sl], b.rows[sl].transpose(1, 2))


def inner(a: FactoredGrad | DenseGrad, b: FactoredGrad | DenseGrad) -> Tensor:
    """Per-unit inner product of two representations of the same parameter's gradient."""
    if isinstance(a, FactoredGrad) and isinstance(b, FactoredGrad):
        return a.inner(b)
    da, db = _as_dense(a), _as_dense(b)
    return (da.flatten(1) * db.flatten(1)).sum(1)


def _as_dense(g: FactoredGrad | DenseGrad) -> Tensor:
    if isinstance(g, DenseGrad):
        return g.per_unit
    if g.ids:
        u, t = g.rows.shape
        out = torch.zeros((u, *g.shape), dtype=g.cols.dtype, device=g.cols.device)
        flat = out.view(u * g.shape[0], g.shape[1])
        offs = (torch.arange(u, device=g.rows.device) * g.shape[0])[:, None]
        return flat.index_add_(0, (g.rows + offs).reshape(-1), g.cols.reshape(u * t, -1)).view_as(out)
    return g.instantiate(slice(None))
