"""Empirical privacy audit in one training run (Steinke, Nasr, Jagielski 2023).

m canaries are drawn; a coin the auditor keeps decides, for each, whether it joins
the training data (probability 1/2).  After training with the run's DP config, every
canary is scored by the model's loss on it.  The auditor guesses "in" for the k
lowest losses and "out" for the k highest; if the training is (ε, δ)-DP, the number
of correct guesses is (nearly) dominated by Binomial(2k, e^ε / (1 + e^ε)) (their
Theorem 5.2, with its δ term), which gives a lower bound on ε at a stated confidence.

The guess sizes k are fixed before looking at the coins (a small grid), and the
confidence is split over the grid (Bonferroni), so picking the best k afterwards does
not overstate the bound.  AUC and exposure are reported as descriptive statistics.

The δ term of the bound grows as 2·m·δ, so the audit is run at δ' = min(δ, 0.01 / m)
and compared with the accountant's ε at that same δ' (a DP-SGD run is (ε(δ'), δ')-DP
for every δ' on its privacy curve); both are reported.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from scipy import stats

GUESS_FRACTIONS = (0.05, 0.1, 0.2, 0.3)  # k / m for each side, chosen before the coins are seen


def p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """Probability, under (ε, δ)-DP, of >= v correct guesses out of r on m coins."""
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= v <= r <= m, got v={v}, r={r}, m={m}")
    q = 1.0 / (1.0 + math.exp(-epsilon))  # accuracy of ε-DP randomised response
    tail = float(stats.binom.sf(v - 1, r, q))  # P[Bin(r, q) >= v]
    # δ term: max over i of P[v - i <= Bin(r, q) < v] / i
    below = stats.binom.pmf(np.arange(v - 1, -1, -1), r, q)  # P[Bin = v-1], P[Bin = v-2], ...
    worst = float(np.max(np.cumsum(below) / np.arange(1, v + 1))) if v > 0 else 0.0
    return min(1.0, tail + 2 * m * delta * worst)


def epsilon_lower_bound(m: int, r: int, v: int, delta: float, *, alpha: float) -> float:
    """The largest ε that the observation (v correct of r) rejects at level ``alpha`` (0 if none)."""
    if r == 0 or p_value(m, r, v, 0.0, delta) >= alpha:
        return 0.0
    lo, hi = 0.0, 1.0
    while p_value(m, r, v, hi, delta) < alpha and hi < 100:
        lo, hi = hi, hi * 2
    for _ in range(50):
        mid = (lo + hi) / 2
        if p_value(m, r, v, mid, delta) < alpha:
            lo = mid
        else:
            hi = mid
    return lo


def guess_counts(scores: np.ndarray, included: np.ndarray, k: int) -> tuple[int, int]:
    """Guess "in" for the k highest scores and "out" for the k lowest: (guesses, correct)."""
    order = np.argsort(-scores, kind="stable")
    top, bottom = order[:k], order[len(order) - k:]
    return 2 * k, int(included[top].sum() + (~included[bottom]).sum())


def auc(scores: np.ndarray, included: np.ndarray) -> float | None:
    """P(score of a random included canary > that of a random excluded one), ties count half."""
    pos, neg = scores[included], scores[~included]
    if len(pos) == 0 or len(neg) == 0:
        return None
    ranks = stats.rankdata(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def exposure(scores: np.ndarray, included: np.ndarray) -> float | None:
    """Mean exposure of the included canaries against the excluded ones (Carlini et al. 2019):
    log2(n_excluded + 1) - log2(rank), rank 1 = scored above every excluded canary."""
    pos, neg = scores[included], np.sort(scores[~included])
    if len(pos) == 0 or len(neg) == 0:
        return None
    ranks = 1 + len(neg) - np.searchsorted(neg, pos, side="left")  # 1 + excluded scoring >= the canary
    return float(np.mean(np.log2(len(neg) + 1) - np.log2(ranks)))


@dataclass
class AuditResult:
    canaries: int
    included: int
    epsilon_lower: float
    confidence: float
    delta: float
    claimed_epsilon: float
    guesses: int  # at the k that gave the bound
    correct: int
    auc: float | None
    exposure: float | None

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        claimed = "∞ (no noise)" if not math.isfinite(self.claimed_epsilon) else f"{self.claimed_epsilon:.3f}"
        return (f"privacy audit: {self.canaries} canaries ({self.included} trained on); "
                f"ε lower bound {self.epsilon_lower:.3f} at {self.confidence:.0%} confidence (δ = {self.delta:.2e}); "
                f"claimed ε {claimed}; {self.correct}/{self.guesses} guesses right; "
                f"AUC {_fmt(self.auc)}; mean exposure {_fmt(self.exposure)} bits")


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def audit_scores(scores: np.ndarray, included: np.ndarray, *, delta: float, claimed_epsilon: float,
                 confidence: float = 0.95) -> AuditResult:
    """The audit's statistics from canary scores (higher = looks more like a member)."""
    m = len(scores)
    alpha = (1 - confidence) / len(GUESS_FRACTIONS)
    best = (0.0, 0, 0)
    for frac in GUESS_FRACTIONS:
        k = max(1, int(frac * m))
        if 2 * k > m:
            continue
        r, v = guess_counts(scores, included, k)
        eps = epsilon_lower_bound(m, r, v, delta, alpha=alpha)
        if eps > best[0] or best[1] == 0:
            best = (eps, r, v)
    return AuditResult(m, int(included.sum()), best[0], confidence, delta, claimed_epsilon, best[1], best[2],
                       auc(scores, included), exposure(scores, included))


@torch.no_grad()
def canary_losses(model: torch.nn.Module, canaries: Sequence[Mapping], *, pad_token_id: int,
                  batch_size: int = 32) -> np.ndarray:
    """Mean next-token loss of the model on each canary (its loss-masked tokens)."""
    from trainer.batching import collate, per_row_loss

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(canaries), batch_size):
        idx = [[i] for i in range(start, min(start + batch_size, len(canaries)))]
        mb = collate(canaries, idx, pad_token_id=pad_token_id, user_level=False)
        res = model(input_ids=mb.input_ids.to(device), attention_mask=mb.attention_mask.to(device))
        logits = res.logits if hasattr(res, "logits") else res
        out.append(per_row_loss(logits, mb.input_ids.to(device), mb.loss_mask.to(device)).float().cpu())
    model.train(was_training)
    return torch.cat(out).numpy().astype(np.float64)


def run_audit(model: torch.nn.Module, examples: Sequence[Mapping], canaries: Sequence[Mapping], config, *,
              pad_token_id: int = 0, confidence: float = 0.95, seed: int | None = None,
              units: Sequence | None = None) -> AuditResult:
    """Train ``model`` with ``config`` on ``examples`` plus a coin-chosen half of ``canaries``; audit it.

    ``units``: the privacy unit of each example (a document's chunks, a user's rows) when the
    config's unit is a group; each canary is then a unit of its own, of one row.  The coins come
    from the OS's secure source unless ``seed`` is given (tests).  ``claimed_epsilon`` in the result
    is the accountant's ε at the audit's δ.
    """
    from trainer import DPTrainer

    rng = np.random.default_rng(seed if seed is not None else secrets.randbits(64))
    included = rng.random(len(canaries)) < 0.5
    kept = [i for i, keep in enumerate(included) if keep]
    train_set = list(examples) + [canaries[i] for i in kept]
    train_units = None
    if units is not None:
        taken = {str(u) for u in units}
        names = [f"canary-{i}" for i in kept]
        if taken & set(names):
            raise ValueError("a private unit is named like a canary (canary-N): rename it")
        train_units = [str(u) for u in units] + names
    trainer = DPTrainer(model, train_set, config, pad_token_id=pad_token_id, units=train_units)
    result = trainer.train(resume=False)
    scores = -canary_losses(model, canaries, pad_token_id=pad_token_id)
    delta = min(trainer.delta, 0.01 / len(canaries))
    claimed = result.ledger.epsilon(delta) if trainer.noise_multiplier > 0 else math.inf
    return audit_scores(scores, included, delta=delta, claimed_epsilon=claimed, confidence=confidence)
