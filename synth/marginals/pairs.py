"""Private-PGM on a public workload (McKenna, Sheldon, Miklau 2019): every pair marginal measured once
with the Gaussian mechanism at one σ, no data-dependent selection.

AIM and MST choose what to measure with the exponential mechanism, a ρ-zCDP step that only the RDP
accountant composes with DP-SGD; RDP's conversion to (ε, δ) then costs the LM noise (Water's settings:
σ 0.532 under RDP against 0.468 under PRV for the same ε).  Here the workload is fixed before the data
is read (every pair of columns whose marginal fits ``max_cells``, coarse where the fine one does not
but a coarse one does, in order of size while the graphical model stays under ``max_model_size``; the
one-way marginal of a column in no measured pair), so the whole column model is k Gaussian
measurements at one noise multiplier: a plain Gaussian mechanism that every accountant, PRV included,
composes exactly.  The workload's size k may follow from DP-estimated domains (earlier releases), but
k measurements of sensitivity 1 at multiplier √(k/2ρ) are one Gaussian mechanism of multiplier 1/√(2ρ)
whatever k is, so that choice changes nothing the accountant sees.  Best for tables with few non-text columns (a few pairs): the budget is split over
every pair, where AIM spends it where the model is worst.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .aim import AIMSettings, AIMSpend, Clique, marginal
from .grouping import coarse_query, pair_options


def plan_workload(columns: list[str], sizes: dict[str, int], ordered: dict[str, int],
                  settings: AIMSettings) -> tuple[list[tuple[Clique, bool]], list[Clique]]:
    """(measured, left out): the public workload as (clique, coarse?) in measurement order, and the pairs
    it leaves out (too many cells even coarse, or a model over ``max_model_size``).  Reads no data."""
    from mbi import Domain
    from mbi.junction_tree import hypothetical_model_size

    domain = Domain(columns, [sizes[c] for c in columns])
    ways = pair_options(itertools.combinations(columns, 2), sizes, ordered, settings.max_cells, settings.coarse_groups)
    options = [(sizes[cl[0]] * sizes[cl[1]], cl, query is not None) for cl, query in ways.items()]
    measured, left_out, cliques = [], [], []
    for _, cl, grouped in sorted(options):
        if hypothetical_model_size(domain, [*cliques, cl]) <= settings.max_model_size:
            measured.append((cl, grouped))
            cliques.append(cl)
        else:
            left_out.append(cl)
    left_out += [cl for cl in itertools.combinations(columns, 2) if cl not in cliques and cl not in left_out]
    covered = {a for cl in cliques for a in cl}
    measured += [((c,), False) for c in columns if c not in covered]
    return measured, left_out


def run_pairs(codes: dict[str, np.ndarray], sizes: dict[str, int], rho: float, rng: np.random.Generator, *,
              sensitivity: int = 1, settings: AIMSettings | None = None, progress=None,
              ordered: dict[str, int] | None = None):
    """Measure the public workload at the one noise multiplier whose k measurements make ρ (as one
    Gaussian of multiplier 1/√(2ρ)), fit mbi's graphical model.  Returns (MarkovRandomField, AIMSpend)."""
    from mbi import Domain, LinearMeasurement
    from mbi.estimation import MirrorDescent

    settings = settings or AIMSettings()
    columns = list(codes)
    work, left_out = plan_workload(columns, sizes, ordered or {}, settings)
    multiplier = math.sqrt(len(work) / (2 * rho))
    spend = AIMSpend(coarse_groups=settings.coarse_groups if any(g for _, g in work) else None, left_out=left_out)
    measurements = []
    for cl, grouped in work:
        x = marginal(codes, sizes, cl)
        extra = {}
        if grouped:
            query = coarse_query(cl, sizes, ordered or {}, settings.coarse_groups)
            x = query.apply(x.reshape([sizes[a] for a in cl]))
            extra = {"query": query}
        measurements.append(LinearMeasurement(x + rng.normal(0.0, multiplier * sensitivity, size=x.size), cl,
                                              multiplier * sensitivity, **extra))
        spend.measure_multipliers.append(multiplier)
        spend.measured.append(cl)
        spend.coarsened.append([a for a, m in zip(cl, query.matrices, strict=True) if m is not None]
                               if grouped else [])
    domain = Domain(columns, [sizes[c] for c in columns])
    model = MirrorDescent().estimate(domain, measurements, iters=settings.pgm_iters)
    if progress is not None:
        progress(1.0, spend.measured[-1])
    assert spend.rho <= rho * (1 + 1e-9), (spend.rho, rho)
    return model, spend
