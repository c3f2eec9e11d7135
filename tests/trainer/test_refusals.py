"""Nothing is trained without privacy: unsupported trainable parameters are refused by name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainer import DPEngine, PrivacyViolationError, UnsupportedLayerError

from .models import tiny_llama


class WithConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.conv = nn.Conv1d(4, 4, 3)


class WithLoose(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.scale = nn.Parameter(torch.ones(4))  # a bare parameter of a container

    def forward(self, x):
        return self.proj(x) * self.scale


def test_unsupported_layer_is_refused_by_name():
    with pytest.raises(UnsupportedLayerError) as err:
        DPEngine(WithConv(), max_grad_norm=1.0)
    msg = str(err.value)
    assert "conv.weight" in msg and "Conv1d" in msg and "requires_grad_(False)" in msg
    assert "proj" not in msg.split("\n", 1)[1].split("Freeze")[0]


def test_loose_parameter_is_refused_and_freezing_it_is_accepted():
    model = WithLoose()
    with pytest.raises(UnsupportedLayerError, match="scale"):
        DPEngine(model, max_grad_norm=1.0)
    model.scale.requires_grad_(False)
    DPEngine(model, max_grad_norm=1.0).detach()


def test_frozen_modules_are_not_hooked():
    model = tiny_llama()
    for p in model.parameters():
        p.requires_grad_(False)
    model.model.layers[0].mlp.down_proj.weight.requires_grad_(True)
    eng = DPEngine(model, max_grad_norm=1.0)
    assert list(eng.trainable_parameters) == ["model.layers.0.mlp.down_proj.weight"]
    eng.detach()


def test_backward_outside_micro_batch_raises():
    model = nn.Sequential(nn.Linear(4, 4))
    eng = DPEngine(model, max_grad_norm=1.0)
    with pytest.raises(PrivacyViolationError, match=r"0\.(weight|bias)"):
        model(torch.randn(2, 4)).sum().backward()
    eng.detach()


def test_parameter_used_outside_its_module_raises():
    class Sneaky(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4, 4)

        def forward(self, x):
            return self.proj(x) + x @ self.proj.weight  # second use bypasses the rule

    model = Sneaky()
    eng = DPEngine(model, max_grad_norm=1.0)
    with pytest.raises(PrivacyViolationError, match="proj.weight"):
        with eng.micro_batch(2):
            model(torch.randn(2, 3, 4)).sum().backward()
    eng.detach()


def test_flattened_batch_is_refused():
    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4, 4)

        def forward(self, x):
            return self.proj(x.reshape(-1, 4))  # (B*T, d): rows are no longer samples

    model = Flat()
    eng = DPEngine(model, max_grad_norm=1.0)
    with pytest.raises(UnsupportedLayerError, match="not per-sample"):
        with eng.micro_batch(2):
            model(torch.randn(2, 3, 4)).sum().backward()
    eng.detach()


def test_backward_after_the_micro_batch_closed_raises():
    model = nn.Sequential(nn.Linear(4, 4))
    eng = DPEngine(model, max_grad_norm=1.0)
    with eng.micro_batch(2):
        loss = model(torch.randn(2, 3, 4)).sum()
    with pytest.raises(RuntimeError, match="inside the `with engine.micro_batch"):
        loss.backward()
    assert model[0].weight.grad is None
    eng.detach()


@pytest.mark.parametrize("clipping", ["per_layer", "flat"])
def test_clipped_sums_are_plain_tensors_not_graph_nodes(clipping):
    """flat mode sums the ghost-normed layers after autograd's backward, with grad mode on again: a
    layer whose saved input is an activation that requires grad once made p.grad a graph node (it
    held the micro-batch's activations, and the noise's in-place add then failed on a pool thread)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    eng = DPEngine(model, max_grad_norm=0.1, clipping=clipping, norm_method="ghost")
    with eng.micro_batch(3):
        model(torch.randn(3, 2, 4)).pow(2).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and not p.grad.requires_grad and p.grad.grad_fn is None, name
    eng.detach()
