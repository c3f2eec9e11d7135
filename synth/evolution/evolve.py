"""Private Evolution (Lin et al. 2023; Aug-PE, Xie et al. 2024), modality-neutral.

A population of candidates comes from a public (or DP-trained) generator; every iteration the
private units vote for their nearest candidates (histogram.py: L2 sensitivity 1 per unit), the
votes are released with Gaussian noise (one ledger step of noise multiplier σ at q = 1), counts
under the threshold are zeroed, the population is redrawn in proportion to the noisy votes and
varied.  Everything after the noisy histogram is post-processing: the population never sees a
private row.  The final population is drawn by the last histogram; a candidate drawn more than once
appears once as voted and its other draws as variations of it.

The modality lives in three callables: ``random_api(n) -> items``, ``variation_api(items, rng) ->
items`` (same length) and ``embed(items) -> (n, d) array``.  Items must be JSON-serialisable: each
finished iteration's population is saved in ``state_dir``, so an interrupted run resumes at its last
iteration without releasing any histogram twice; the random API's first draw stays beside it
(``first_draw.json``: what the generator gives alone, the baseline the histograms improve on).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from trainer import PrivacyLedger
from trainer.io import atomic_write_text

from .histogram import clean_histogram, group_members, noisy_histogram, vote_weights


@dataclass
class EvolutionSettings:
    population: int = 200  # candidates per iteration (and synthetic items out)
    iterations: int = 5  # noisy histograms released
    k: int = 1  # nearest candidates each private row votes for
    threshold_sigmas: float = 2.0  # noisy counts below this many σ are zeroed
    user_votes: str = "split"  # user level: "split" a user's vote over their rows, or "one" row per user
    variations: int = 1  # children of each drawn parent in the next pool of candidates
    keep_parents: bool = False  # the drawn parents themselves stay in the next pool, beside their children

    @property
    def pool(self) -> int:
        """Candidates that vote in each histogram: the final population is drawn from the last pool."""
        return self.population * (self.variations + int(self.keep_parents))

    def check(self) -> None:
        from trainer.errors import ConfigError

        for name in ("population", "iterations", "k", "variations"):
            if getattr(self, name) < 1:
                raise ConfigError(f"evolve.{name} must be >= 1, got {getattr(self, name)}")
        if self.k > self.pool:
            raise ConfigError(f"evolve.k ({self.k}) cannot exceed the candidates that vote ({self.pool})")
        if not (math.isfinite(self.threshold_sigmas) and self.threshold_sigmas >= 0):
            raise ConfigError(f"evolve.threshold_sigmas must be a finite number >= 0, got {self.threshold_sigmas}")


@dataclass
class EvolutionResult:
    items: list
    iterations: int
    votes_kept: list[float]  # per iteration: Σ noisy votes after the threshold / units (DP, a fidelity proxy)
    empty_histograms: int  # iterations whose noisy histogram was all zero (population kept uniformly)


def evolve(private_embeddings: np.ndarray, *, random_api: Callable[[int], list],
           variation_api: Callable[[list, np.random.Generator], list], embed: Callable[[list], np.ndarray],
           settings: EvolutionSettings, sigma: float, ledger: PrivacyLedger, rng: np.random.Generator,
           units: list | None = None, stage: str = "evolve:histogram", state_dir: str | Path | None = None,
           progress: bool = True, group_of: Callable[[Any], Any] | None = None,
           private_groups: list | None = None, candidates: dict | None = None) -> EvolutionResult:
    """Run (or resume) PE; each released histogram is recorded in ``ledger`` as ``stage``.

    Groups (Aug-PE's classes, e.g. a document's labels): ``group_of(item)`` names a candidate's group
    and ``private_groups`` each private row's; a row votes among its own group's candidates, and each
    group is redrawn by its own votes, so it keeps its share of the population (the variation must
    keep an item's group).  A row still casts one vote of norm 1: the sensitivity is unchanged.

    A pool larger than the population (``settings.variations`` > 1 or ``keep_parents``, Aug-PE's
    selection): every histogram draws ``population`` parents from the pool, and the next pool holds
    ``variations`` children of each (and, with ``keep_parents``, each drawn parent once: a good
    candidate is not lost to its variation); the last histogram draws the final population.

    ``candidates``: the settings that make the candidates (the road's sampling and variation settings);
    like ``settings`` and σ they must match a saved state's for it to resume, so a population drawn at
    one temperature is not carried on at another."""
    if (group_of is None) != (private_groups is None):
        raise ValueError("give group_of and private_groups together")
    settings.check()
    weights = vote_weights(units, rng, settings.user_votes)
    n_units = len(private_embeddings) if units is None else len({str(u) for u in units})
    threshold = settings.threshold_sigmas * sigma
    fingerprint = _fingerprint(settings, sigma, candidates)
    state = _load_state(state_dir, fingerprint)
    if state is None:
        state = {"iteration": 0, "population": random_api(settings.pool), "votes_kept": [], "empty": 0}
        _save_first_draw(state_dir, state["population"])
        _save_state(state_dir, fingerprint, state)
    for _ in range(state["iteration"]):  # released before an interruption: paid once, recorded again here
        _record(ledger, stage, sigma, settings, units)
    bar = _progress(settings.iterations, state["iteration"], progress)
    while state["iteration"] < settings.iterations:
        population = state["population"]
        groups = [group_of(item) for item in population] if group_of else None
        votes = clean_histogram(private_embeddings, embed(population), k=settings.k, weights=weights,
                                private_groups=private_groups, candidate_groups=groups)
        noisy = noisy_histogram(votes, sigma, threshold, rng)
        _record(ledger, stage, sigma, settings, units)
        total = float(noisy.sum())
        if total == 0:  # nothing cleared the noise: keep the population as it is (counted, shown)
            state["empty"] += 1
        chosen = _resample(noisy, groups, rng, settings.population)
        parents = [population[i] for i in chosen]
        last = state["iteration"] + 1 == settings.iterations
        children = _final_draw(parents, chosen, variation_api, rng) if last else \
            _next_pool(parents, chosen, variation_api, rng, settings)
        state = {"iteration": state["iteration"] + 1, "population": children,
                 "votes_kept": [*state["votes_kept"], total / max(1, n_units)], "empty": state["empty"]}
        expected = settings.population if last else settings.pool
        if len(state["population"]) != expected:
            raise ValueError(f"variation_api returned {len(state['population'])} items for {expected}")
        _save_state(state_dir, fingerprint, state)
        bar.update(1)
        bar.set_postfix(eps=f"{ledger.epsilon():.2f}", votes_kept=f"{state['votes_kept'][-1]:.0%}")
    bar.close()
    return EvolutionResult(state["population"], state["iteration"], state["votes_kept"], state["empty"])


def _resample(noisy: np.ndarray, groups: list | None, rng: np.random.Generator, size: int) -> np.ndarray:
    """``size`` indices drawn by the noisy votes (with replacement); each group gets its share of the
    pool's candidates (as many as it holds when the pool is the population), uniformly where a
    group's votes are all zero."""
    if groups is None:
        parts = [(np.arange(len(noisy)), size)]
    else:
        members = list(group_members(groups).values())
        parts = list(zip(members, _shares([len(m) for m in members], size), strict=True))
    chosen = []
    for ids, count in parts:
        votes = noisy[ids]
        chosen.append(rng.choice(ids, size=count, p=votes / votes.sum() if votes.sum() > 0 else None))
    return np.concatenate(chosen)


def _shares(counts: list[int], size: int) -> list[int]:
    """``size`` split in proportion to ``counts`` (largest remainders; exact when they divide)."""
    exact = np.asarray(counts, dtype=float) * size / sum(counts)
    out = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - out), kind="stable")[:size - out.sum()]:
        out[i] += 1
    return out.tolist()


def _repeats(chosen: np.ndarray) -> list[int]:
    """Positions of ``chosen`` that draw a candidate already drawn before them."""
    seen, repeats = set(), []
    for j, i in enumerate(chosen.tolist()):
        if i in seen:
            repeats.append(j)
        seen.add(i)
    return repeats


def _final_draw(parents: list, chosen: np.ndarray, variation_api, rng: np.random.Generator,
                children_of: list | None = None) -> list:
    """The synthetic data: the last histogram's draw, each candidate once as voted, and every further
    draw of it replaced by a variation of it (drawn with replacement, a few popular candidates would
    otherwise fill the output: 500 records held 69 distinct ones on Water).  ``children_of``: more
    parents to vary in the same call, their children appended."""
    repeats = _repeats(chosen)
    more = children_of or []
    if not repeats and not more:
        return list(parents)
    varied = variation_api([parents[j] for j in repeats] + more, rng)
    out = list(parents)
    for j, child in zip(repeats, varied[:len(repeats)], strict=True):
        out[j] = child
    return out + varied[len(repeats):]


def _next_pool(parents: list, chosen: np.ndarray, variation_api, rng: np.random.Generator,
               settings: EvolutionSettings) -> list:
    """The candidates of the next histogram: ``variations`` children of every drawn parent, and with
    ``keep_parents`` each drawn parent once (a repeated draw a further child instead)."""
    if not settings.keep_parents:
        return variation_api(parents * settings.variations, rng)
    return _final_draw(parents, chosen, variation_api, rng, children_of=parents * settings.variations)


def pool_summary(settings: EvolutionSettings) -> str:
    """The card's words for a pool larger than the population ('' when they are the same)."""
    if settings.pool == settings.population:
        return ""
    children = f"{settings.variations} {'child' if settings.variations == 1 else 'children'}"
    return (f"; each histogram's {settings.pool} candidates are {children} of each of the {settings.population} "
            "parents the one before drew" + (", and those parents themselves" if settings.keep_parents else ""))


def _record(ledger: PrivacyLedger, stage: str, sigma: float, settings: EvolutionSettings, units) -> None:
    ledger.record(stage, noise_multiplier=sigma, sample_rate=1.0, steps=1, k=settings.k,
                  user_votes=settings.user_votes if units is not None else None)


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc="Private Evolution", unit="iteration")


STATE_FILE = "evolution_state.json"
FIRST_DRAW_FILE = "first_draw.json"


def _fingerprint(settings: EvolutionSettings, sigma: float, candidates: dict | None) -> dict[str, Any]:
    # a JSON round trip: the saved copy compares equal (tuples become lists)
    return json.loads(json.dumps({**asdict(settings), "sigma": sigma,
                                  **({"candidates": candidates} if candidates else {})}, default=str))


def _load_state(state_dir, fingerprint: dict[str, Any]) -> dict | None:
    if state_dir is None or not (Path(state_dir) / STATE_FILE).is_file():
        return None
    saved = json.loads((Path(state_dir) / STATE_FILE).read_text())
    if saved.get("settings") != fingerprint:
        from trainer.errors import ConfigError

        raise ConfigError(f"{Path(state_dir) / STATE_FILE} is a Private Evolution run with other settings "
                          f"({saved.get('settings')}); pass --overwrite to start afresh")
    return saved["state"]


def finished_population(state_dir: str | Path, iterations: int, n: int, noun: str = "items") -> list:
    """The final population of a finished run (re-exported by `dpsynth generate`: no new release)."""
    from trainer.errors import ConfigError

    path = Path(state_dir) / STATE_FILE
    state = json.loads(path.read_text())["state"] if path.is_file() else None
    if state is None or state["iteration"] < iterations:
        raise ConfigError(f"{path}: no finished Private Evolution run to export; run `dpsynth run` (it resumes)")
    if len(state["population"]) != n:
        raise ConfigError(f"the evolved population holds {len(state['population'])} {noun}, not generate.n = {n}: "
                          "evolution's output is fixed; change n with a new run (--overwrite)")
    return state["population"]


def _write_json(state_dir, name: str, payload) -> None:
    """``payload`` as ``state_dir/name``, atomically (nothing when the run keeps no state)."""
    if state_dir is None:
        return
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(state_dir) / name, json.dumps(payload, default=str))


def _save_state(state_dir, fingerprint: dict[str, Any], state: dict) -> None:
    _write_json(state_dir, STATE_FILE, {"settings": fingerprint, "state": state})


def _save_first_draw(state_dir, population: list) -> None:
    _write_json(state_dir, FIRST_DRAW_FILE, population)


def first_draw(state_dir: str | Path) -> list | None:
    """The random API's draw before any histogram (None if the run kept no state)."""
    path = Path(state_dir) / FIRST_DRAW_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def finetune_target(target_epsilon: float, share: float, ledger: PrivacyLedger) -> float:
    """fine-tune+evolve: the ε the DP fine-tuning may reach (after the ledger's earlier stages), so that
    the histograms get the rest: ``share`` of what is left goes to fine-tuning."""
    from trainer.accounting import epsilon

    spent = epsilon(ledger.history, delta=ledger.accountant_delta, accountant=ledger.accountant) if ledger.events else 0.0
    return spent + share * (target_epsilon - spent)


def calibrate_sigma(target_epsilon: float, iterations: int, ledger: PrivacyLedger) -> float:
    """The σ at which ``iterations`` histograms after the ledger's stages reach ``target_epsilon``."""
    from trainer.accounting import calibrate_noise_multiplier

    return calibrate_noise_multiplier(target_epsilon=target_epsilon, delta=ledger.accountant_delta, sample_rate=1.0,
                                      steps=iterations, accountant=ledger.accountant, prior=ledger.history)
