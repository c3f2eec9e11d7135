"""The private step of Private Evolution: every private unit votes for its nearest candidates.

Each private row finds its ``k`` nearest candidates (cosine similarity of embeddings) and gives
each of them ``1/√k``, so one row's vote vector has L2 norm 1.  A privacy unit's votes are bounded
the same way:

* example level: one row is one unit, its vote has norm 1;
* user level, ``"split"``: a user's rows share one vote, each row's vector scaled by 1/m (m = the
  user's rows), so the user's summed vector has norm ≤ 1 (triangle inequality);
* user level, ``"one"``: one row per user, drawn at random, votes alone.

Adding or removing one unit therefore moves the histogram by at most 1 in L2: the Gaussian
mechanism with σ (in votes) is one ledger event of noise multiplier σ at sampling rate 1.
Thresholding the noisy counts (counts below ``threshold`` become 0) is post-processing.
"""

from __future__ import annotations

import numpy as np

USER_VOTES = ("split", "one")


def nearest(private: np.ndarray, candidates: np.ndarray, k: int, *, chunk: int = 4096) -> np.ndarray:
    """Indices (rows, k) of each private embedding's k most cosine-similar candidates."""
    if not 1 <= k <= len(candidates):
        raise ValueError(f"k must be in [1, {len(candidates)}], got {k}")

    def unit(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    p, c = unit(private), unit(candidates)
    out = np.empty((len(p), k), dtype=np.int64)
    for start in range(0, len(p), chunk):
        sims = p[start:start + chunk] @ c.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < len(c) else np.tile(np.arange(len(c)), (len(sims), 1))
        out[start:start + chunk] = top
    return out


def vote_weights(units: list | None, rng: np.random.Generator, user_votes: str = "split") -> np.ndarray:
    """Per private row, the weight of its vote so that each unit's votes have L2 norm ≤ 1."""
    if units is None:
        return None  # every row weighs 1
    if user_votes not in USER_VOTES:
        raise ValueError(f"user_votes must be one of {USER_VOTES}, got {user_votes!r}")
    keys = np.asarray([str(u) for u in units], dtype=object)
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    if user_votes == "split":
        return 1.0 / counts[inverse]
    weights = np.zeros(len(keys))
    order = rng.permutation(len(keys))
    _, first = np.unique(inverse[order], return_index=True)
    weights[order[first]] = 1.0
    return weights


def clean_histogram(private: np.ndarray, candidates: np.ndarray, *, k: int = 1, weights: np.ndarray | None = None,
                    private_groups: list | None = None, candidate_groups: list | None = None) -> np.ndarray:
    """Votes per candidate (float), before noise: Σ over rows of weight / √k for each of its k nearest.

    With groups (Aug-PE's classes: a document's labels), a row votes among its own group's candidates
    only, or among all of them where its group has fewer than k; either way its vote has norm 1, so
    the sensitivity is unchanged."""
    w = np.ones(len(private)) if weights is None else np.asarray(weights, dtype=float)
    votes = np.zeros(len(candidates))
    if private_groups is None:
        np.add.at(votes, nearest(private, candidates, k).ravel(), np.repeat(w, k) / np.sqrt(k))
        return votes
    members = group_members(candidate_groups)
    everyone = np.arange(len(candidates))
    for group, voters in group_members(private_groups).items():
        among = members.get(group, everyone)
        among = among if len(among) >= k else everyone
        ids = among[nearest(private[voters], candidates[among], k)]
        np.add.at(votes, ids.ravel(), np.repeat(w[voters], k) / np.sqrt(k))
    return votes


def group_members(groups: list) -> dict:
    """Group (any hashable) -> the indices of its members, in order."""
    out: dict = {}
    for i, group in enumerate(groups):
        out.setdefault(group, []).append(i)
    return {group: np.asarray(ids) for group, ids in out.items()}


def noisy_histogram(votes: np.ndarray, sigma: float, threshold: float, rng: np.random.Generator) -> np.ndarray:
    """The released histogram: votes + N(0, σ²) per candidate, counts below ``threshold`` set to 0."""
    if not sigma > 0:
        raise ValueError(f"σ must be > 0, got {sigma}")
    noisy = votes + rng.normal(0.0, sigma, size=votes.shape)
    noisy[noisy < threshold] = 0.0
    return noisy
