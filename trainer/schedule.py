"""The learning-rate schedule: linear warm-up, then constant or cosine decay to a floor.

A pure function of the step, so a resumed run continues on the same curve (the optimizer's
state holds no schedule of its own)."""

from __future__ import annotations

import math

SCHEDULES = ("constant", "cosine")


def learning_rate_at(step: int, *, base: float, total_steps: int, warmup_steps: int = 0,
                     schedule: str = "constant", min_ratio: float = 0.1) -> float:
    """The rate for optimizer step ``step`` (0-based) of ``total_steps``.

    Warm-up: ``base * (step + 1) / warmup_steps``.  After it, ``constant`` keeps ``base``;
    ``cosine`` falls from ``base`` to ``min_ratio * base`` at the last step (half a cosine period)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; one of {', '.join(SCHEDULES)}")
    if step < warmup_steps:
        return base * (step + 1) / warmup_steps
    if schedule == "constant":
        return base
    decay_steps = total_steps - warmup_steps
    progress = 1.0 if decay_steps <= 1 else (step - warmup_steps) / (decay_steps - 1)
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))
