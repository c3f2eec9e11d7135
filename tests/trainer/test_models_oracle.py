"""Whole Hugging Face models (tied embeddings) against the fp64 per-sample oracle."""

from __future__ import annotations

import pytest
import torch

from trainer import DPEngine

from .helpers import check_against_oracle
from .models import lm_loss, tiny_gpt2, tiny_llama

MICRO = [[[0], [1], [2]], [[3], [4]], [[5]]]


def _ids(n=6, t=12, vocab=97, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (n, t), generator=g)


@pytest.mark.parametrize("clipping", ["per_layer", "flat"])
@pytest.mark.parametrize("make", [tiny_llama, tiny_gpt2], ids=["llama", "gpt2"])
def test_model_matches_oracle(make, clipping):
    check_against_oracle(make(), lm_loss, _ids(), MICRO, clipping=clipping)


@pytest.mark.parametrize("make", [tiny_llama, tiny_gpt2], ids=["llama", "gpt2"])
def test_tied_embedding_is_one_group(make):
    eng = DPEngine(make(), max_grad_norm=1.0)
    tied = [g for g in eng.groups if any("emb" in n or "wte" in n for n in g)]
    assert len(tied) == 1
    # the LM head shares the embedding's Parameter, so its only name is the embedding's
    assert not any("lm_head" in n for g in eng.groups for n in g)
    eng.detach()


@pytest.mark.parametrize("norm_method", ["ghost", "instantiate"])
def test_llama_user_level_matches_oracle(norm_method):
    micro = [[[0, 2], [1]], [[3, 4, 5]]]
    check_against_oracle(tiny_llama(), lm_loss, _ids(), micro, clipping="per_layer", norm_method=norm_method)


def test_lora_trains_only_adapters_and_matches_oracle():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        tiny_llama(),
        LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "gate_proj"]),
    )
    for n, p in model.named_parameters():  # peft inits B=0; move off zero so gradients reach A too
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.1)
    eng = DPEngine(model, max_grad_norm=1.0)
    names = list(eng.trainable_parameters)
    eng.detach()
    assert names and all("lora_" in n for n in names)
    for clipping in ("per_layer", "flat"):
        check_against_oracle(model, lm_loss, _ids(), MICRO, clipping=clipping)


def test_generate_and_save_work_while_attached(tmp_path):
    model = tiny_llama(dtype=torch.float32)
    eng = DPEngine(model, max_grad_norm=1.0)
    out = model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=4, do_sample=False)
    assert out.shape == (1, 7)
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").exists()
    eng.detach()
    assert "forward" not in model.model.layers[0].self_attn.q_proj.__dict__
