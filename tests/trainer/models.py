"""Tiny models for tests, built from configs with random weights (no downloads)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def tiny_llama(vocab=97, tied=True, dtype=torch.float64, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        tie_word_embeddings=tied, attention_dropout=0.0,
    )
    return LlamaForCausalLM(cfg).to(dtype)


def tiny_gpt2(vocab=97, dtype=torch.float64, seed=0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=64,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True,
    )
    return GPT2LMHeadModel(cfg).to(dtype)


def lm_loss(model, ids):
    """Per-row mean next-token loss of a causal LM on (B, T) ids."""
    logits = model(input_ids=ids).logits
    v = logits.shape[-1]
    nll = F.cross_entropy(logits[:, :-1].reshape(-1, v), ids[:, 1:].reshape(-1), reduction="none")
    return nll.view(ids.shape[0], -1).mean(1)


class Wrap(nn.Module):
    """One layer under test between a fixed input projection and a fixed readout."""

    def __init__(self, layer: nn.Module, d_in: int, d_out: int, *, ids_input: bool = False):
        super().__init__()
        self.layer, self.ids_input = layer, ids_input
        self.readout = nn.Parameter(torch.randn(d_out, 5), requires_grad=False)

    def forward(self, x):
        h = self.layer(x)
        return torch.tanh(h) @ self.readout


def row_loss(model, x):
    """A smooth per-row loss of any (B, ..., 5) output."""
    out = model(x)
    return (out**2).flatten(1).sum(1) + out.flatten(1).sum(1)
