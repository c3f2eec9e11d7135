"""Private Evolution's private step: one unit moves the histogram by at most 1 (what the ledger
says), the noise is what the ledger says, and the loop pulls a population toward the private data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from synth.evolution import (
    EvolutionSettings,
    calibrate_sigma,
    clean_histogram,
    evolve,
    first_draw,
    noisy_histogram,
    vote_weights,
)
from trainer import PrivacyLedger
from trainer.accounting import epsilon


def _emb(rng, n, d=8):
    return rng.normal(size=(n, d))


@pytest.mark.parametrize("k", [1, 3])
def test_adding_or_removing_one_example_moves_the_histogram_by_at_most_one(k):
    rng = np.random.default_rng(0)
    candidates = _emb(rng, 40)
    for _ in range(20):
        private = _emb(rng, 30)
        full = clean_histogram(private, candidates, k=k)
        drop = int(rng.integers(30))
        without = clean_histogram(np.delete(private, drop, axis=0), candidates, k=k)
        assert np.linalg.norm(full - without) == pytest.approx(1.0)  # k votes of 1/√k: norm exactly 1
        assert full.sum() == pytest.approx(30 * np.sqrt(k))


@pytest.mark.parametrize("user_votes", ["split", "one"])
def test_one_users_votes_move_the_histogram_by_at_most_one(user_votes):
    rng = np.random.default_rng(1)
    candidates = _emb(rng, 25)
    private = _emb(rng, 60)
    units = [f"u{i % 12}" for i in range(50)] + ["heavy"] * 10  # one user with ten rows
    keep = [i for i, u in enumerate(units) if u != "heavy"]
    for _ in range(10):
        weights = vote_weights(units, np.random.default_rng(int(rng.integers(1 << 30))), user_votes)
        full = clean_histogram(private, candidates, k=2, weights=weights)
        # the other users' weights do not depend on "heavy" (split: their own row counts; one: their own
        # independent draw), so the neighbouring data set keeps them
        without = clean_histogram(private[keep], candidates, k=2, weights=weights[keep])
        assert np.linalg.norm(full - without) <= 1.0 + 1e-9
    # without the bound, the heavy user alone would move it by more than 1: the test can fail
    unbounded = clean_histogram(private, candidates, k=1) - clean_histogram(private[:50], candidates, k=1)
    assert np.linalg.norm(unbounded) > 1.0


def test_grouped_votes_stay_in_their_group_and_one_row_still_moves_the_histogram_by_one():
    """Aug-PE's classes: a row votes among its own label's candidates (all of them where its label has
    none); removing a row moves the histogram by exactly 1, as without groups."""
    rng = np.random.default_rng(2)
    candidates, private = _emb(rng, 30), _emb(rng, 40)
    candidate_groups = ["pos"] * 20 + ["neg"] * 10
    private_groups = ["pos"] * 25 + ["neg"] * 10 + ["rare"] * 5  # no candidate is "rare"
    for k in (1, 2):
        full = clean_histogram(private, candidates, k=k, private_groups=private_groups,
                               candidate_groups=candidate_groups)
        only_pos = clean_histogram(private[:25], candidates[:20], k=k)
        only_neg = clean_histogram(private[25:35], candidates[20:], k=k)
        rare = clean_histogram(private[35:], candidates, k=k)
        np.testing.assert_allclose(full, np.concatenate([only_pos, only_neg]) + rare)
        for drop in (3, 30, 38):
            keep = [i for i in range(40) if i != drop]
            without = clean_histogram(private[keep], candidates, k=k, candidate_groups=candidate_groups,
                                      private_groups=[private_groups[i] for i in keep])
            assert np.linalg.norm(full - without) == pytest.approx(1.0)


def test_grouped_evolution_keeps_each_groups_share_of_the_population(tmp_path):
    """Two labels on the circle, each with its private cluster: every iteration redraws a label's
    candidates by that label's votes only, so the population keeps 70 / 30 and each label's candidates
    move to its own cluster."""
    rng = np.random.default_rng(0)
    theta = np.concatenate([_angles(600, 1.0, 0.1, rng), _angles(400, -2.0, 0.1, rng)])
    private = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    private_groups = ["a"] * 600 + ["b"] * 400

    def random_api(n):
        return [["a" if i < 70 else "b", float(t)] for i, t in enumerate(rng.uniform(-np.pi, np.pi, n))]

    def variation(items, r):
        return [[g, t + float(r.normal(0, 0.1))] for g, t in items]

    def embed(items):
        t = np.asarray([t for _, t in items])
        return np.stack([np.cos(t), np.sin(t)], axis=1)

    ledger = PrivacyLedger(delta=1e-5, accountant="prv")
    settings = EvolutionSettings(population=100, iterations=5)
    result = evolve(private, random_api=random_api, variation_api=variation, embed=embed, settings=settings,
                    sigma=calibrate_sigma(4.0, 5, ledger), ledger=ledger, rng=np.random.default_rng(1),
                    progress=False, group_of=lambda item: item[0], private_groups=private_groups)
    groups = [g for g, _ in result.items]
    assert groups.count("a") == 70 and groups.count("b") == 30
    final = {g: np.angle(np.exp(1j * np.asarray([t for h, t in result.items if h == g]))) for g in "ab"}
    assert abs(np.median(final["a"]) - 1.0) < 0.2 and abs(np.median(final["b"]) + 2.0) < 0.2
    with pytest.raises(ValueError, match="together"):
        evolve(private, random_api=random_api, variation_api=variation, embed=embed, settings=settings, sigma=1.0,
               ledger=ledger, rng=rng, progress=False, group_of=lambda item: item[0])


def test_one_vote_per_user_keeps_exactly_one_row_of_each_user():
    units = ["a"] * 5 + ["b"] * 2 + ["c"]
    w = vote_weights(units, np.random.default_rng(0), "one")
    assert sorted(w.tolist()) == [0.0] * 5 + [1.0] * 3
    assert w[:5].sum() == 1.0 and w[5:7].sum() == 1.0 and w[7] == 1.0


def test_the_noise_is_gaussian_of_the_stated_sigma_and_the_threshold_zeroes_small_counts():
    rng = np.random.default_rng(0)
    votes = np.full(200_000, 50.0)
    noisy = noisy_histogram(votes, 4.0, threshold=-np.inf, rng=rng)
    assert noisy.mean() == pytest.approx(50.0, abs=0.05) and noisy.std() == pytest.approx(4.0, rel=0.01)
    small = noisy_histogram(np.array([0.0, 1.0, 100.0]), 1.0, threshold=10.0, rng=rng)
    assert small[0] == 0.0 and small[1] == 0.0 and small[2] > 90


def _angles(n, mean, spread, rng):
    return rng.normal(mean, spread, n)


def test_the_loop_pulls_the_population_to_the_private_data_and_the_ledger_pays_each_histogram(tmp_path):
    """Toy modality: points on a circle (embedding (cos θ, sin θ)); the private ones sit near θ = 1;
    random candidates anywhere, variation a small step."""
    rng = np.random.default_rng(0)
    private_theta = _angles(2000, 1.0, 0.15, rng)
    private = np.stack([np.cos(private_theta), np.sin(private_theta)], axis=1)
    drawn = []

    def random_api(n):
        drawn.extend(rng.uniform(-np.pi, np.pi, n).tolist())
        return list(drawn)

    def variation(items, r):
        return (np.asarray(items) + r.normal(0, 0.1, len(items))).tolist()

    def embed(items):
        t = np.asarray(items)
        return np.stack([np.cos(t), np.sin(t)], axis=1)

    ledger = PrivacyLedger(delta=1e-5, accountant="prv")
    settings = EvolutionSettings(population=100, iterations=6)
    sigma = calibrate_sigma(2.0, settings.iterations, ledger)
    result = evolve(private, random_api=random_api, variation_api=variation, embed=embed, settings=settings,
                    sigma=sigma, ledger=ledger, rng=np.random.default_rng(1), state_dir=tmp_path, progress=False)
    final = np.angle(np.exp(1j * np.asarray(result.items)))
    assert abs(np.median(final) - 1.0) < 0.15 and np.mean(np.abs(final - 1.0) < 0.5) > 0.9
    assert len(set(result.items)) == 100  # repeated draws of a winner come out as its variations
    assert [(e.stage, e.noise_multiplier, e.steps) for e in ledger.events] == [("evolve:histogram", sigma, 6)]
    assert ledger.epsilon() == pytest.approx(epsilon([(sigma, 1.0, 6)], delta=1e-5), rel=1e-9)
    assert ledger.epsilon() <= 2.0 + 1e-6 and result.iterations == 6 and result.votes_kept[-1] > 0.5
    assert first_draw(tmp_path) == drawn  # the generator's own draw, kept beside the evolved state
    assert np.mean(np.abs(np.asarray(drawn) - 1.0) < 0.5) < 0.3


def test_an_interrupted_run_resumes_at_its_last_iteration_without_releasing_twice(tmp_path):
    rng = np.random.default_rng(0)
    private = rng.normal(size=(300, 4))
    calls = {"variation": 0}

    def variation(items, r):
        calls["variation"] += 1
        if calls["variation"] == 3:
            raise KeyboardInterrupt
        return [list(np.asarray(x) + r.normal(0, 0.1, 4)) for x in items]

    kwargs = dict(random_api=lambda n: rng.normal(size=(n, 4)).tolist(), embed=lambda items: np.asarray(items),
                  settings=EvolutionSettings(population=30, iterations=5), sigma=2.0, progress=False,
                  state_dir=tmp_path)
    first = PrivacyLedger(delta=1e-5)
    with pytest.raises(KeyboardInterrupt):
        evolve(private, variation_api=variation, ledger=first, rng=np.random.default_rng(1), **kwargs)
    saved = json.loads((tmp_path / "evolution_state.json").read_text())["state"]
    assert saved["iteration"] == 2  # two histograms released and their populations kept
    calls["variation"] = 100  # no more interruptions
    second = PrivacyLedger(delta=1e-5)
    result = evolve(private, variation_api=variation, ledger=second, rng=np.random.default_rng(2), **kwargs)
    assert result.iterations == 5 and second.events[0].steps == 5  # 2 resumed + 3 new, each paid once
    with pytest.raises(Exception, match="other settings"):
        evolve(private, variation_api=variation, ledger=PrivacyLedger(delta=1e-5), rng=np.random.default_rng(3),
               **{**kwargs, "sigma": 3.0})
    with pytest.raises(Exception, match="other settings"):  # candidates made another way: not this run's to resume
        evolve(private, variation_api=variation, ledger=PrivacyLedger(delta=1e-5), rng=np.random.default_rng(3),
               candidates={"temperature": 0.5}, **kwargs)


def test_a_larger_pool_keeps_the_drawn_parents_beside_their_children_and_still_pays_one_histogram_each():
    """keep_parents with 2 variations: each histogram's pool is 3 x the population; the next pool holds
    every drawn parent once, unchanged, and the rest are children; the output is the population."""
    rng = np.random.default_rng(0)
    private_theta = _angles(2000, 1.0, 0.15, rng)
    private = np.stack([np.cos(private_theta), np.sin(private_theta)], axis=1)
    pools, asked = [], []

    def random_api(n):
        asked.append(n)
        return rng.uniform(-np.pi, np.pi, n).tolist()

    def embed(items):
        pools.append(list(items))
        t = np.asarray(items)
        return np.stack([np.cos(t), np.sin(t)], axis=1)

    ledger = PrivacyLedger(delta=1e-5, accountant="prv")
    settings = EvolutionSettings(population=50, iterations=4, variations=2, keep_parents=True)
    sigma = calibrate_sigma(2.0, settings.iterations, ledger)
    result = evolve(private, random_api=random_api, embed=embed, settings=settings, sigma=sigma, ledger=ledger,
                    variation_api=lambda items, r: (np.asarray(items) + r.normal(0, 0.1, len(items))).tolist(),
                    rng=np.random.default_rng(1), progress=False)
    assert asked == [150] and [len(p) for p in pools] == [150] * 4 and len(result.items) == 50
    for before, after in zip(pools[:-1], pools[1:], strict=True):
        kept = [x for x in after if x in set(before)]
        assert 0 < len(kept) == len(set(kept)) <= 50  # drawn parents, each once
        assert len(after) - len(kept) >= 100  # two children of each of the 50 draws (repeats add more)
    final = np.angle(np.exp(1j * np.asarray(result.items)))
    assert abs(np.median(final) - 1.0) < 0.15 and np.mean(np.abs(final - 1.0) < 0.5) > 0.9
    assert len(set(result.items)) == 50
    assert [(e.stage, e.steps) for e in ledger.events] == [("evolve:histogram", 4)]
    assert ledger.epsilon() <= 2.0 + 1e-6


def test_a_larger_pool_draws_each_groups_share_of_the_population():
    rng = np.random.default_rng(0)
    private = rng.normal(size=(300, 2))
    settings = EvolutionSettings(population=40, iterations=3, variations=1, keep_parents=True)
    result = evolve(private, random_api=lambda n: [["a" if i < n * 0.7 else "b", float(x)]
                                                   for i, x in enumerate(rng.normal(size=n))],
                    variation_api=lambda items, r: [[g, x + float(r.normal(0, 0.1))] for g, x in items],
                    embed=lambda items: np.asarray([[x, 0.0] for _, x in items]), settings=settings, sigma=2.0,
                    ledger=PrivacyLedger(delta=1e-5), rng=np.random.default_rng(1), progress=False,
                    group_of=lambda item: item[0], private_groups=["a"] * 200 + ["b"] * 100)
    groups = [g for g, _ in result.items]
    assert len(groups) == 40 and groups.count("a") == 28 and groups.count("b") == 12
