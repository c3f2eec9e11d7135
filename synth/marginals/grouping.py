"""Coarse marginals: a marginal with an ordered column's adjacent codes summed into a few groups.

A fine binned number (say 40 bins of a rating) makes every pair marginal it is in large (40 × 5
cells), and at a small ρ AIM rightly declines to measure one: the noise on 200 cells outweighs what
the pair would teach the model.  The same pair with the number in 8 groups of 5 bins has 40 cells, a
fifth of the noise for most of the dependence, and its measurement still constrains the fine model
(Private-PGM fits the fine potentials to any linear measurement of them).  Whether AIM picks it is
still AIM's choice: at Water's ρ its score rates even the coarse pair below a repeated one-way, and
the exponential mechanism, nearly uniform at that ε, picks it on most seeds, not all.

A row falls in exactly one coarse cell, so the coarse marginal has the fine one's sensitivity (1 in L1
and L2 per row): the same σ and the same selection scores apply, and the ledger sees an ordinary
Gaussian measurement.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


def group_matrix(size: int, ordered: int, groups: int) -> np.ndarray:
    """(coarse codes × ``size``) 0/1 matrix summing the first ``ordered`` codes (a number's bins, in order)
    into ``groups`` runs of near-equal length; codes after them (e.g. "missing") keep a group each."""
    edges = np.round(np.linspace(0, ordered, groups + 1)).astype(int)
    rows = [np.isin(np.arange(size), np.arange(lo, hi)) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    rows += [np.arange(size) == code for code in range(ordered, size)]
    return np.array(rows, dtype=float)


@dataclasses.dataclass(frozen=True, eq=False)
class GroupedQuery:
    """mbi query: the clique's marginal with axis ``i`` multiplied by ``matrices[i]`` (None: kept fine),
    flattened in C order.  Hashed by identity, as mbi's own array-holding queries are (JAX keys its
    compiled programs on it)."""

    matrices: tuple[np.ndarray | None, ...]

    def apply(self, values, xp=np):
        """The coarse marginal of ``values`` (the fine marginal, shaped as the clique), flattened."""
        for axis, m in enumerate(self.matrices):
            if m is not None:
                values = xp.moveaxis(xp.tensordot(xp.asarray(m), values, axes=([1], [axis])), 0, axis)
        return values.reshape(-1)

    def __call__(self, factor):
        import jax.numpy as jnp

        return self.apply(factor.values, jnp)

    def op_norm_sq(self) -> float:
        """‖Q‖₂² of the Kronecker product of disjoint 0/1 groupings: the product of the largest groups."""
        return float(math.prod(m.sum(axis=1).max() for m in self.matrices if m is not None))

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other


def coarse_query(clique: tuple[str, ...], sizes: dict[str, int], ordered: dict[str, int],
                 groups: int) -> GroupedQuery | None:
    """The coarse version of ``clique``'s marginal: every ordered column with more than ``groups`` ordered
    codes summed into ``groups``; None when no column of the clique is that fine."""
    matrices = tuple(group_matrix(sizes[a], ordered[a], groups) if ordered.get(a, 0) > groups else None
                     for a in clique)
    return GroupedQuery(matrices) if any(m is not None for m in matrices) else None


def coarse_cells(clique: tuple[str, ...], query: GroupedQuery, sizes: dict[str, int]) -> int:
    """Cells of ``clique``'s coarse marginal under ``query``."""
    return math.prod(m.shape[0] if m is not None else sizes[a] for a, m in zip(clique, query.matrices, strict=True))


def pair_options(pairs, sizes: dict[str, int], ordered: dict[str, int], max_cells: int,
                 groups: int | None) -> dict[tuple[str, ...], GroupedQuery | None]:
    """Each pair that can be measured, with how: None (its fine marginal fits ``max_cells``) or the coarse
    query (only the coarse one fits).  Pairs that fit neither way are not keys.  Reads no data."""
    out = {}
    for cl in pairs:
        if math.prod(sizes[a] for a in cl) <= max_cells:
            out[cl] = None
        elif groups and (query := coarse_query(cl, sizes, ordered, groups)) is not None \
                and coarse_cells(cl, query, sizes) <= max_cells:
            out[cl] = query
    return out
