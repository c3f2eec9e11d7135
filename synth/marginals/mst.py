"""MST (McKenna, Miklau, Sheldon 2021, winner of the 2018 NIST DP synthetic-data challenge), on mbi.

A third of ρ measures every one-way marginal, a third selects a maximum spanning tree of column
pairs (Kruskal's algorithm with the exponential mechanism picking each edge by how badly the
one-way model fits the pair), a third measures the tree's pair marginals; mbi's Private-PGM fits
the graphical model.  Cheaper than AIM (one refit), weaker on tables whose dependencies are not a
tree.  Same spend report as AIM (``AIMSpend``), same sensitivity scaling.

As in the pairs workload (``pairs.py``), a pair whose fine marginal exceeds ``max_cells`` but whose
coarse one (``grouping.py``: a fine number's adjacent bins summed) fits is a candidate edge on the
coarse terms: scored by the coarse marginal's L1 error (a row moves it by at most 1, as the fine
one) and, if the tree takes it, measured coarse.  Which representation a pair gets follows from
public sizes alone.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np

from .aim import AIMSettings, AIMSpend, _exponential_mechanism, marginal, model_marginals
from .grouping import pair_options


def run_mst(codes: dict[str, np.ndarray], sizes: dict[str, int], rho: float, rng: np.random.Generator, *,
            sensitivity: int = 1, settings: AIMSettings | None = None, progress=None,
            ordered: dict[str, int] | None = None):
    from mbi import Domain, LinearMeasurement
    from mbi.estimation import MirrorDescent

    settings = settings or AIMSettings()
    columns = list(codes)
    d = len(columns)
    domain = Domain(columns, [sizes[c] for c in columns])
    ways = pair_options(itertools.combinations(columns, 2), sizes, ordered or {}, settings.max_cells,
                        settings.coarse_groups) if d > 1 else {}
    spend = AIMSpend(coarse_groups=settings.coarse_groups if any(q is not None for q in ways.values()) else None)
    measurements = []

    def view(cl, fine: np.ndarray) -> np.ndarray:
        """The marginal as it is scored and measured: fine, or coarse where only the coarse one fits."""
        query = ways.get(cl)
        return query.apply(fine.reshape([sizes[a] for a in cl])) if query is not None else fine

    def measure(cl, multiplier: float) -> None:
        x = view(cl, marginal(codes, sizes, cl))
        query = ways.get(cl)
        extra = {"query": query} if query is not None else {}
        measurements.append(LinearMeasurement(x + rng.normal(0.0, multiplier * sensitivity, size=x.size), cl,
                                              multiplier * sensitivity, **extra))
        spend.measure_multipliers.append(multiplier)
        spend.measured.append(cl)
        spend.coarsened.append([a for a, m in zip(cl, query.matrices, strict=True) if m is not None]
                               if query is not None else [])

    pairs = list(ways)
    edges = _forest_size(columns, pairs)  # the tree's size, from the public domain sizes alone
    third = rho / 3 if edges else rho  # no measurable pair: every bit of ρ goes to the one-way marginals
    for c in columns:
        measure((c,), math.sqrt(d / (2 * third)))
    estimator = MirrorDescent()
    model = estimator.estimate(domain, measurements, iters=settings.pgm_iters)
    if edges:
        fitted = model_marginals(model, pairs)
        errors = {cl: float(np.abs(view(cl, marginal(codes, sizes, cl)) - view(cl, fitted[cl])).sum()) for cl in pairs}
        component = {c: c for c in columns}
        root = functools.partial(_root, component)
        eps = math.sqrt(8 * third / edges)
        tree = []
        for _ in range(edges):  # every spanning forest of the candidate graph has this many edges
            joinable = [cl for cl in pairs if root(cl[0]) != root(cl[1])]
            pick = joinable[_exponential_mechanism(np.array([errors[cl] for cl in joinable]), eps, sensitivity, rng)]
            spend.select_rhos.append(eps**2 / 8)
            component[root(pick[0])] = root(pick[1])
            tree.append(pick)
        for cl in tree:
            measure(cl, math.sqrt(len(tree) / (2 * third)))
        model = estimator.estimate(domain, measurements, iters=settings.pgm_iters, warm_start=model)
    if not any(spend.coarsened):
        spend.coarse_groups = None  # the tree took no coarse edge
    if progress is not None:
        progress(1.0, spend.measured[-1])
    assert spend.rho <= rho * (1 + 1e-9), (spend.rho, rho)
    return model, spend


def _forest_size(columns: list[str], pairs: list[tuple[str, str]]) -> int:
    """Edges of a spanning forest of the graph whose edges are the measurable pairs: columns minus
    connected components.  It depends only on the domain (which pairs fit ``max_cells``), so ρ is split
    by it before any data is read; splitting by d - 1 left the selection and measurement shares of the
    rounds a disconnected graph cannot have unspent."""
    parent = {c: c for c in columns}
    joined = 0
    for a, b in pairs:
        ra, rb = _root(parent, a), _root(parent, b)
        if ra != rb:
            parent[ra] = rb
            joined += 1
    return joined


def _root(parent: dict[str, str], c: str) -> str:
    """The union-find representative of ``c``'s component."""
    while parent[c] != c:
        c = parent[c]
    return c
