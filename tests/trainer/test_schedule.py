"""The learning-rate schedule: its curve, and the trainer following it across a resume."""

from __future__ import annotations

import math

import pytest
import torch

from trainer import ConfigError, DPTrainer, TrainConfig
from trainer.schedule import learning_rate_at

from .models import tiny_llama
from .test_trainer import _cfg, _examples


def test_warm_up_then_cosine_to_the_floor():
    rates = [learning_rate_at(s, base=1.0, total_steps=12, warmup_steps=2, schedule="cosine", min_ratio=0.1)
             for s in range(12)]
    assert rates[:2] == [0.5, 1.0]  # linear warm-up ends at the base rate
    assert rates[2] == pytest.approx(1.0) and rates[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(rates[2:], rates[3:], strict=False))  # never rises after the warm-up
    # the middle of the decay is half-way between the base and the floor
    mid = learning_rate_at(2 + 9 / 2, base=1.0, total_steps=12, warmup_steps=2, schedule="cosine", min_ratio=0.1)
    assert mid == pytest.approx(0.55)
    assert [learning_rate_at(s, base=0.3, total_steps=5) for s in range(5)] == [0.3] * 5
    with pytest.raises(ValueError, match="linear"):
        learning_rate_at(0, base=1.0, total_steps=5, schedule="linear")


def test_the_config_refuses_an_unknown_schedule_or_floor():
    with pytest.raises(ConfigError, match="lr_schedule"):
        TrainConfig(noise_multiplier=1.0, lr_schedule="step")
    with pytest.raises(ConfigError, match="min_lr_ratio"):
        TrainConfig(noise_multiplier=1.0, min_lr_ratio=1.5)


def _params(trainer):
    return {n: p.detach().clone() for n, p in trainer.params.items()}


def test_the_trainer_steps_on_the_curve_and_a_resumed_run_stays_on_it(tmp_path, monkeypatch):
    cfg = dict(steps=6, warmup_steps=2, lr_schedule="cosine", min_lr_ratio=0.2, learning_rate=1e-2)
    seen = []
    original = torch.optim.AdamW.step

    def spy(self, *a, **kw):
        seen.append(self.param_groups[0]["lr"])
        return original(self, *a, **kw)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    full = DPTrainer(tiny_llama(dtype=torch.float32), _examples(), _cfg(**cfg), output_dir=tmp_path / "a")
    full.train()
    want = [learning_rate_at(s, base=1e-2, total_steps=6, warmup_steps=2, schedule="cosine", min_ratio=0.2)
            for s in range(6)]
    assert seen == pytest.approx(want) and math.isclose(seen[-1], 2e-3)

    seen.clear()
    crashed = DPTrainer(tiny_llama(dtype=torch.float32), _examples(), _cfg(**cfg), output_dir=tmp_path / "b")
    crashed.train(max_steps=3)  # the newest checkpoint is step 2
    resumed = DPTrainer(tiny_llama(dtype=torch.float32), _examples(), _cfg(**cfg), output_dir=tmp_path / "b")
    resumed.train()
    assert seen[3:] == pytest.approx(want[2:])  # steps 2-5 again after the resume, on the same curve
    for name, p in _params(full).items():
        torch.testing.assert_close(_params(resumed)[name], p, rtol=1e-6, atol=1e-7)
