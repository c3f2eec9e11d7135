"""MST (McKenna, Miklau, Sheldon 2021, winner of the 2018 NIST DP synthetic-data challenge), on mbi.

A third of ρ measures every one-way marginal, a third selects a maximum spanning tree of column
pairs (Kruskal's algorithm with the exponential mechanism picking each edge by how badly the
one-way model fits the pair), a third measures the tree's pair marginals; mbi's Private-PGM fits
the graphical model.  Cheaper than AIM (one refit), weaker on tables whose dependencies are not a
tree.  Same spend report as AIM (``AIMSpend``), same sensitivity scaling.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .aim import AIMSettings, AIMSpend, _exponential_mechanism, marginal, model_marginals


def run_mst(codes: dict[str, np.ndarray], sizes: dict[str, int], rho: float, rng: np.random.Generator, *,
            sensitivity: int = 1, settings: AIMSettings | None = None, progress=None):
    from mbi import Domain, LinearMeasurement
    from mbi.estimation import MirrorDescent

    settings = settings or AIMSettings()
    columns = list(codes)
    d = len(columns)
    domain = Domain(columns, [sizes[c] for c in columns])
    spend = AIMSpend()
    measurements = []

    def measure(cl, multiplier: float) -> None:
        x = marginal(codes, sizes, cl)
        measurements.append(LinearMeasurement(x + rng.normal(0.0, multiplier * sensitivity, size=x.size), cl,
                                              multiplier * sensitivity))
        spend.measure_multipliers.append(multiplier)
        spend.measured.append(cl)

    third = rho / 3 if d > 1 else rho
    for c in columns:
        measure((c,), math.sqrt(d / (2 * third)))
    estimator = MirrorDescent()
    model = estimator.estimate(domain, measurements, iters=settings.pgm_iters)
    if d > 1:
        pairs = [cl for cl in itertools.combinations(columns, 2) if sizes[cl[0]] * sizes[cl[1]] <= settings.max_cells]
        fitted = model_marginals(model, pairs)
        errors = {cl: float(np.abs(marginal(codes, sizes, cl) - fitted[cl]).sum()) for cl in pairs}
        component = {c: c for c in columns}

        def root(c):
            while component[c] != c:
                c = component[c]
            return c

        eps = math.sqrt(8 * third / (d - 1))
        tree = []
        for _ in range(d - 1):
            joinable = [cl for cl in pairs if root(cl[0]) != root(cl[1])]
            if not joinable:
                break
            pick = joinable[_exponential_mechanism(np.array([errors[cl] for cl in joinable]), eps, sensitivity, rng)]
            spend.select_rhos.append(eps**2 / 8)
            component[root(pick[0])] = root(pick[1])
            tree.append(pick)
        for cl in tree:
            measure(cl, math.sqrt(len(tree) / (2 * third)))
        model = estimator.estimate(domain, measurements, iters=settings.pgm_iters, warm_start=model)
    if progress is not None:
        progress(1.0, spend.measured[-1])
    assert spend.rho <= rho * (1 + 1e-9), (spend.rho, rho)
    return model, spend
