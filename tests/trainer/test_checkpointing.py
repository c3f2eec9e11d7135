"""Gradient checkpointing (transformers' own, reentrant and not): the clipped sums equal the fp64
oracle, and in per_layer mode every group is clipped during backward, not held to its end."""

from __future__ import annotations

import pytest
import torch

from trainer import DPEngine
from trainer import engine as engine_module

from .helpers import check_against_oracle
from .models import lm_loss, tiny_llama

MICRO = [[[0], [1], [2]], [[3], [4]]]


def _ids(n=5, t=10, vocab=97):
    return torch.randint(0, vocab, (n, t), generator=torch.Generator().manual_seed(3))


def _checkpointed(reentrant: bool):
    model = tiny_llama()
    kwargs = {"use_reentrant": reentrant}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x renamed it
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.train()
    return model


@pytest.mark.parametrize("clipping", ["per_layer", "flat"])
@pytest.mark.parametrize("reentrant", [False, True], ids=["non_reentrant", "reentrant"])
def test_checkpointed_model_matches_the_oracle(reentrant, clipping):
    check_against_oracle(_checkpointed(reentrant), lm_loss, _ids(), MICRO, clipping=clipping)


@pytest.mark.parametrize("reentrant", [False, True], ids=["non_reentrant", "reentrant"])
def test_per_layer_groups_complete_during_backward_under_checkpointing(reentrant, monkeypatch):
    model = _checkpointed(reentrant)
    where = []
    complete = engine_module.DPEngine._complete

    def recording(self, group):
        where.append(torch._C._current_graph_task_id() != -1)  # True: inside backward
        return complete(self, group)

    monkeypatch.setattr(engine_module.DPEngine, "_complete", recording)
    eng = DPEngine(model, max_grad_norm=1.0, clipping="per_layer")
    ids = _ids()
    with eng.micro_batch(len(ids)):
        lm_loss(model, ids).sum().backward()
    eng.detach()
    assert len(where) == len(eng.groups)
    assert all(where), f"{where.count(False)} of {len(where)} groups waited for the end of backward"
