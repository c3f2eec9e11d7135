"""CUDA checks (marker ``gpu``; skipped without a CUDA device): the engine and one DP-SGD step on
the GPU agree with the CPU, and the trainer's noise generators live on the model's device."""

from __future__ import annotations

import copy

import pytest
import torch

from trainer import DPTrainer, TrainConfig

from .helpers import engine_grads
from .models import lm_loss, tiny_llama

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]

MICRO = [[[0], [1], [2]], [[3, 4]]]


@pytest.mark.parametrize("clipping", ["per_layer", "flat"])
def test_clipped_sums_on_cuda_equal_the_cpu_ones(clipping):
    model = tiny_llama(dtype=torch.float32)
    ids = torch.randint(0, 97, (5, 12), generator=torch.Generator().manual_seed(0))
    cpu, _ = engine_grads(copy.deepcopy(model), lm_loss, ids, MICRO, max_grad_norm=0.5, clipping=clipping)
    gpu, _ = engine_grads(copy.deepcopy(model).cuda(), lm_loss, ids.cuda(), MICRO, max_grad_norm=0.5,
                          clipping=clipping)
    for n in cpu:
        assert torch.allclose(gpu[n].cpu(), cpu[n], rtol=1e-4, atol=1e-6), n


def test_a_dp_step_runs_on_cuda_with_noise_drawn_on_the_device():
    model = tiny_llama(dtype=torch.float32).cuda()
    examples = [{"input_ids": list(range(1, 9))} for _ in range(16)]
    trainer = DPTrainer(model, examples, TrainConfig(noise_multiplier=1.0, expected_batch_size=4, steps=2,
                                                     physical_batch_size=4, progress=False))
    assert all(g.device.type == "cuda" for g in trainer.noise_gens)
    result = trainer.train()
    trainer.close()
    assert result.steps == 2 and all(p.is_cuda for p in model.parameters())
