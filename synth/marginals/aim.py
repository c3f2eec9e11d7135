"""AIM, the adaptive and iterative mechanism (McKenna, Mullins, Sheldon, Miklau 2022), on mbi.

Select, measure, estimate, round after round, inside a zCDP budget ρ:

* the one-way marginal of every column is measured first (Gaussian noise);
* each round the exponential mechanism picks the marginal (of the workload's downward
  closure) that the current model fits worst, with ε_t (ρ = ε_t²/8), among the candidates
  that keep the graphical model under ``max_model_size``;
* the Gaussian mechanism measures it with σ_t (ρ = 1/(2σ_t²) per unit of sensitivity);
* mbi's mirror descent (Private-PGM) refits the graphical model to every noisy measurement;
* when a measurement changed the model by less than its noise, σ_t halves and ε_t doubles;
  the last round spends what is left.

One addition to the paper: every pair with a finely binned number is also offered coarse, with the
number's adjacent bins summed into ``coarse_groups`` groups (``grouping.py``), so that at a small ρ
the pair's dependence can still be measured where its fine marginal has too many cells to pay for.

The inference is mbi's; the loop is ours, so that each selection and each measurement is
reported for the ledger (``AIMSpend``).  A unit (a row, or a user's at most ``sensitivity``
rows) moves every marginal count vector by at most ``sensitivity`` in L1 and L2, and every
selection score by ``sensitivity`` × its weight: noise and scores are scaled by it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from .grouping import coarse_query

Clique = tuple[str, ...]

# AIM's paper plans 16 rounds per column; on census (700 rows, 15 columns, ε = 1 and 4, 8 seeds each,
# bench/census_columns.py) 4 per column scored 0.782 / 0.865 SDMetrics against 0.765 / 0.858 at 16:
# at small N each round's measurement needs the larger share of ρ
ROUNDS_PER_COLUMN = 4


@dataclass
class AIMSettings:
    max_model_size: float = 80.0  # MB of the graphical model's potentials at the end
    max_cells: int = 10_000  # workload marginals larger than this are left out
    rounds: int | None = None  # the budget is planned for this many rounds (default ROUNDS_PER_COLUMN × columns)
    pgm_iters: int = 1000  # mirror-descent iterations per refit
    select_share: float = 0.1  # share of each round's ρ spent on selection
    coarse_groups: int | None = 8  # pairs are also offered with fine numbers in this many groups (None: not)


@dataclass
class AIMSpend:
    """What the mechanism released, for the ledger: Gaussian noise multipliers (σ / sensitivity) of
    every measurement, and the ρ of every exponential-mechanism selection."""
    measure_multipliers: list[float] = field(default_factory=list)
    select_rhos: list[float] = field(default_factory=list)
    measured: list[Clique] = field(default_factory=list)
    coarsened: list[list[str]] = field(default_factory=list)  # per measurement: its columns summed in groups
    coarse_groups: int | None = None  # how many groups of bins they were summed into
    left_out: list[Clique] = field(default_factory=list)  # workload pairs never measured (pairs mechanism)

    def describe(self, i: int) -> str:
        """Measurement ``i`` as the card names it, e.g. ``overall_rating×rating (overall_rating in 8 groups
        of bins)``."""
        name = "×".join(self.measured[i])
        coarse = self.coarsened[i] if i < len(self.coarsened) else []
        return f"{name} ({', '.join(coarse)} in {self.coarse_groups} groups of bins)" if coarse else name

    @property
    def rho(self) -> float:
        return sum(0.5 / s**2 for s in self.measure_multipliers) + sum(self.select_rhos)


def workload(columns: list[str], sizes: dict[str, int], max_cells: int) -> list[Clique]:
    """Every pair of columns whose marginal has at most ``max_cells`` cells (AIM's default workload)."""
    return [cl for cl in itertools.combinations(columns, 2) if sizes[cl[0]] * sizes[cl[1]] <= max_cells]


def candidates_of(work: list[Clique]) -> dict[Clique, float]:
    """The downward closure of the workload, each clique weighted by how many workload attributes it covers."""
    closure = {sub for cl in work for r in range(1, len(cl) + 1) for sub in itertools.combinations(cl, r)}
    # sorted by size, then by name: a set's order changes with every process's string hashing, and the
    # exponential mechanism picks by index (a seeded run must pick the same clique)
    return {cl: float(sum(len(set(cl) & set(w)) for w in work)) for cl in sorted(closure, key=lambda c: (len(c), c))}


def marginal(codes: dict[str, np.ndarray], sizes: dict[str, int], clique: Clique) -> np.ndarray:
    """Counts of the private rows in every cell of ``clique`` (flattened, C order)."""
    flat = np.ravel_multi_index([codes[a] for a in clique], [sizes[a] for a in clique])
    return np.bincount(flat, minlength=math.prod(sizes[a] for a in clique)).astype(float)


def model_marginals(model, cliques: list[Clique]) -> dict[Clique, np.ndarray]:
    """The model's marginals on ``cliques``, in numpy: from a fitted marginal when one covers the clique,
    else by variable elimination over the potentials (in log space).  mbi's own projection compiles a
    JAX program per clique, which for AIM's hundreds of candidates per round costs more than the fit."""
    tables = {tuple(f.domain.attributes): np.asarray(f.values, dtype=float) for f in model.marginals.tables.values()}
    factors = [(np.asarray(f.values, dtype=float), tuple(f.domain.attributes)) for f in model.potentials.tables.values()]
    sizes = {a: model.domain[a] for a in model.domain.attributes}
    total = float(model.total)
    out = {}
    for cl in cliques:
        cover = next((t for t in tables if set(cl) <= set(t)), None)
        if cover is not None:
            m = tables[cover].sum(axis=tuple(i for i, a in enumerate(cover) if a not in cl))
            kept = [a for a in cover if a in cl]
            m = np.transpose(m, [kept.index(a) for a in cl])
        else:
            m = _eliminate(factors, cl, sizes)
            m = m / m.sum() * total
        out[cl] = np.asarray(m, dtype=float).ravel()
    return out


def _eliminate(factors: list[tuple[np.ndarray, Clique]], keep: Clique, sizes: dict[str, int]) -> np.ndarray:
    """Σ over every attribute not in ``keep`` of the product of the exponentiated log-potentials
    ``factors`` (unnormalised, axes in ``keep`` order), eliminating in log space (log-sum-exp), so that
    products of many small factors never underflow."""
    from scipy.special import logsumexp

    work = list(factors) + [(np.zeros(sizes[a]), (a,)) for a in keep]
    hidden = {a for _, attrs in work for a in attrs} - set(keep)
    while hidden:
        # eliminate the attribute whose combined factor is smallest (greedy min-size order)
        var = min(sorted(hidden), key=lambda v, work=work: _combined_size(work, v, sizes))
        involved = [f for f in work if var in f[1]]
        work = [f for f in work if var not in f[1]]
        union = tuple(dict.fromkeys(a for _, attrs in involved for a in attrs))
        joint = sum(_broadcast(arr, attrs, union) for arr, attrs in involved)
        work.append((logsumexp(joint, axis=union.index(var)), tuple(a for a in union if a != var)))
        hidden.discard(var)
    joint = sum(_broadcast(arr, attrs, keep) for arr, attrs in work)
    return np.exp(joint - joint.max())


def _broadcast(arr: np.ndarray, attrs: Clique, union: Clique) -> np.ndarray:
    """``arr`` (axes ``attrs``) with its axes in ``union`` order and size-1 axes for the attributes it lacks."""
    order = sorted(range(len(attrs)), key=lambda i: union.index(attrs[i]))
    moved = np.transpose(arr, order)
    present = [attrs[i] for i in order]
    return moved.reshape([moved.shape[present.index(a)] if a in present else 1 for a in union])


def _combined_size(work: list[tuple[np.ndarray, Clique]], var: str, sizes: dict[str, int]) -> int:
    return math.prod(sizes[a] for a in {a for _, attrs in work if var in attrs for a in attrs})


def _exponential_mechanism(scores: np.ndarray, eps: float, sensitivity: float, rng: np.random.Generator) -> int:
    logits = eps / (2 * sensitivity) * (scores - scores.max())
    p = np.exp(logits)
    return int(rng.choice(len(scores), p=p / p.sum()))


def _round_noise(rho: float, select_share: float) -> tuple[float, float]:
    """(σ multiplier, ε of the selection) of a round that spends ``rho``."""
    return math.sqrt(1 / (2 * (1 - select_share) * rho)), math.sqrt(8 * select_share * rho)


# JAX keeps every compiled program mapped; AIM's refits compile new ones each round, and past about
# 65,000 mappings (Linux's default vm.max_map_count) LLVM fails with "Cannot allocate memory"
MAX_MAPPINGS = 30_000


def _release_compiled_programs(jax) -> None:
    """Drop JAX's compiled programs when the process holds many memory mappings (recompiling costs
    seconds, so not every round)."""
    try:
        with open("/proc/self/maps") as maps:
            mappings = sum(1 for _ in maps)
    except OSError:  # not Linux: no such limit known
        return
    if mappings > MAX_MAPPINGS:
        jax.clear_caches()


def run_aim(codes: dict[str, np.ndarray], sizes: dict[str, int], rho: float, rng: np.random.Generator, *,
            sensitivity: int = 1, settings: AIMSettings | None = None, progress=None,
            ordered: dict[str, int] | None = None):
    """Fit a graphical model to the coded private columns with AIM inside ρ-zCDP.
    Returns (mbi MarkovRandomField, AIMSpend).  ``progress(fraction_of_rho_spent, clique)`` is called
    after every round.  ``ordered``: for each numeric column, how many of its first codes are bins in
    order (the ones a coarse marginal may group)."""
    import jax
    from mbi import Domain, LinearMeasurement
    from mbi.estimation import MirrorDescent
    from mbi.junction_tree import hypothetical_model_size

    settings = settings or AIMSettings()
    columns = list(codes)
    domain = Domain(columns, [sizes[c] for c in columns])
    work = workload(columns, sizes, settings.max_cells)
    candidates = candidates_of(work) if work else {(c,): 1.0 for c in columns}
    answers = {cl: marginal(codes, sizes, cl) for cl in candidates}
    for c in columns:
        answers.setdefault((c,), marginal(codes, sizes, (c,)))
    # clique -> its coarse query, for the pairs with a number finer than coarse_groups
    coarse = {cl: query for cl in candidates if settings.coarse_groups and len(cl) > 1
              and (query := coarse_query(cl, sizes, ordered or {}, settings.coarse_groups)) is not None}
    coarse_answers = {cl: q.apply(answers[cl].reshape([sizes[a] for a in cl])) for cl, q in coarse.items()}
    rounds = max(settings.rounds or ROUNDS_PER_COLUMN * len(columns), len(columns))
    sigma, eps = _round_noise(rho / rounds, settings.select_share)  # σ as a multiplier of the sensitivity
    spend = AIMSpend(coarse_groups=settings.coarse_groups if coarse else None)
    measurements = []

    def measure(cl: Clique, multiplier: float, grouped: bool = False) -> None:
        x = coarse_answers[cl] if grouped else answers[cl]
        y = x + rng.normal(0.0, multiplier * sensitivity, size=x.size)
        extra = {"query": coarse[cl]} if grouped else {}
        measurements.append(LinearMeasurement(y, cl, multiplier * sensitivity, **extra))
        spend.measure_multipliers.append(multiplier)
        spend.measured.append(cl)
        spend.coarsened.append([a for a, m in zip(cl, coarse[cl].matrices, strict=True) if m is not None]
                               if grouped else [])

    # the one-way marginals first, at the planned per-round σ (AIM's initialisation): at most 90% of ρ
    for c in columns:
        measure((c,), sigma)
    estimator = MirrorDescent()
    model = estimator.estimate(domain, measurements, iters=settings.pgm_iters)
    done = False
    while not done:
        left = rho - spend.rho
        if left <= 2 * (0.5 / sigma**2 + eps**2 / 8):  # the last round takes what is left
            sigma, eps = _round_noise(left, settings.select_share)
            done = True
        # this round's spend, counted before the size limit is set (as in AIM)
        size_limit = settings.max_model_size * (spend.rho + 0.5 / sigma**2 + eps**2 / 8) / rho
        cliques = list(model.cliques)
        free = {sub for cl in cliques for r in range(1, len(cl) + 1) for sub in itertools.combinations(cl, r)}
        small = [cl for cl in candidates
                 if cl in free or hypothetical_model_size(domain, [*cliques, cl]) <= size_limit]
        estimates = model_marginals(model, small)
        # an option is a candidate marginal, fine (False) or coarse (True); a row moves either by at most 1
        options = [(cl, False) for cl in small] + [(cl, True) for cl in small if cl in coarse]

        def view(cl: Clique, grouped: bool, fine: np.ndarray) -> np.ndarray:
            return coarse[cl].apply(fine.reshape([sizes[a] for a in cl])) if grouped else fine

        bias = math.sqrt(2 / math.pi) * sigma * sensitivity
        scores = []
        for cl, grouped in options:
            truth = coarse_answers[cl] if grouped else answers[cl]
            scores.append(candidates[cl] * (np.abs(truth - view(cl, grouped, estimates[cl])).sum() - bias * truth.size))
        chosen, grouped = options[_exponential_mechanism(np.array(scores), eps,
                                                         sensitivity * max(candidates[cl] for cl in small), rng)]
        spend.select_rhos.append(eps**2 / 8)
        measure(chosen, sigma, grouped)
        before = view(chosen, grouped, estimates[chosen])
        model = estimator.estimate(domain, measurements, iters=settings.pgm_iters, warm_start=model)
        _release_compiled_programs(jax)
        after = view(chosen, grouped, model_marginals(model, [chosen])[chosen])
        if progress is not None:
            progress(min(1.0, spend.rho / rho), chosen)
        if not done and np.abs(after - before).sum() <= math.sqrt(2 / math.pi) * sigma * sensitivity * before.size:
            sigma, eps = sigma / 2, eps * 2  # the measurement told the model little: spend more per round
    assert spend.rho <= rho * (1 + 1e-9), (spend.rho, rho)
    return model, spend
