"""Private Evolution on the shared floor: DP nearest-neighbour votes over generated candidates.

``histogram``: the private step (votes of L2 sensitivity 1 per unit, Gaussian noise, threshold);
``evolve``: the loop around it, with the modality's random / variation / embedding callables.
"""

from .evolve import (
    EvolutionResult,
    EvolutionSettings,
    calibrate_sigma,
    evolve,
    finetune_target,
    first_draw,
    pool_summary,
)
from .histogram import clean_histogram, noisy_histogram, vote_weights

__all__ = ["EvolutionResult", "EvolutionSettings", "calibrate_sigma", "clean_histogram", "evolve",
           "finetune_target", "first_draw", "noisy_histogram", "pool_summary", "vote_weights"]
