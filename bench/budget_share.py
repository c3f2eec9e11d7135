"""What ``columns.budget_share`` costs the LM: its σ and the column model's ρ at each share (issue 15).

    python bench/budget_share.py

The column road spends the share of ε on the column model (ρ-zCDP, one Gaussian of multiplier
1/√(2ρ) in RDP) and calibrates DP-SGD's σ so that the composition reaches the target.  RDP pays
log(1/δ)/(α − 1) once for the whole run, so the column model costs the LM far less than its share:
the table shows the LM's σ (and its rise over σ with no column model) at each share, for the Water
bench's settings and a few others.  Deterministic; seconds.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SETTINGS = [  # (N units, expected batch, steps, ε): the Water bench first
    (1500, 24, 12, 4.0), (1500, 24, 200, 4.0), (10_000, 100, 1000, 4.0), (1500, 24, 12, 1.0), (10_000, 100, 1000, 1.0)]
SHARES = (0.1, 0.25, 0.5, 0.75)


def lm_sigma(n: int, batch: int, steps: int, eps: float, share: float | None) -> tuple[float, float]:
    """(σ of DP-SGD, ρ of the column model) when the column model takes ``share`` (None: no column model)."""
    from synth.records.column_road import column_rho
    from trainer.accounting import calibrate_noise_multiplier
    from trainer.accounting.ledger import PrivacyLedger

    delta = 1 / n**1.1
    rho, prior = 0.0, []
    if share is not None:
        rho = column_rho(PrivacyLedger(delta=delta, accountant="rdp"), eps, share)
        prior = [(1 / math.sqrt(2 * rho), 1.0, 1)]
    sigma = calibrate_noise_multiplier(target_epsilon=eps, delta=delta, sample_rate=batch / n, steps=steps,
                                       accountant="rdp", prior=prior)
    return sigma, rho


def main() -> None:
    print("| N | batch | steps | ε | σ, LM alone | " + " | ".join(f"share {s}: σ (rise), ρ" for s in SHARES) + " |")
    print("|---:|---:|---:|---:|---:|" + "---:|" * len(SHARES))
    for n, batch, steps, eps in SETTINGS:
        alone, _ = lm_sigma(n, batch, steps, eps, None)
        cells = []
        for share in SHARES:
            sigma, rho = lm_sigma(n, batch, steps, eps, share)
            cells.append(f"{sigma:.3f} (+{100 * (sigma / alone - 1):.0f}%), {rho:.4f}")
        print(f"| {n:,} | {batch} | {steps} | {eps:g} | {alone:.3f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
