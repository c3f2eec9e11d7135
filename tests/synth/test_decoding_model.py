"""The model a generator decodes with (``generate.dtype``): fp32 merges LoRA in place and restores it;
bf16 decodes a bf16 copy with the adapter folded in, whose logits follow the fp32 model's, and leaves
the trained model exactly as it was."""

from __future__ import annotations

import pytest
import torch

from synth.lm import ModelChoice
from synth.lm.decoding_model import decoding_model
from synth.records.generator import RecordGenerator
from synth.run_config import build_config
from synth.spec import DatasetSpec
from trainer.errors import ConfigError

SPEC_FIELDS = {"serialization": "json", "columns": [
    {"name": "t", "max_chars": 12}, {"name": "r", "type": "integer", "min": 1, "max": 5}]}
SPEC = DatasetSpec.from_dict(SPEC_FIELDS)


@pytest.fixture()
def lora_generator():
    """A scratch Llama with a LoRA adapter whose B is not zero (a fresh adapter would be a no-op)."""
    torch.manual_seed(0)
    gen = RecordGenerator(SPEC, ModelChoice(model="scratch", finetune="lora"))
    with torch.no_grad():
        for name, p in gen.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    gen.model.eval()
    return gen


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def test_bf16_decodes_a_folded_copy_and_leaves_the_trained_model_unchanged(lora_generator):
    model = lora_generator.model
    ids = torch.tensor([lora_generator._prompt_ids()])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    reference = _logits(model, ids)
    with decoding_model(model, "bf16") as low:
        assert low is not model
        assert {p.dtype for p in low.parameters()} == {torch.bfloat16}
        assert {b.dtype for b in low.buffers() if b.is_floating_point()} == {torch.float32}  # RoPE's inv_freq
        assert not any("lora" in n for n, _ in low.named_parameters())  # the adapter is folded in
        got = _logits(low, ids)
    # bf16 keeps 8 bits of mantissa: the logits follow the fp32 model's, they do not equal them
    assert (got - reference).abs().max() < 0.05 * reference.abs().max()
    assert (got.argmax(-1) == reference.argmax(-1)).float().mean() > 0.9
    for n, p in model.named_parameters():
        assert p.dtype == torch.float32 and torch.equal(p, before[n]), n
    assert {n for n, p in model.named_parameters() if p.requires_grad} == trainable
    unmerged = _logits(model, ids)
    assert torch.equal(unmerged, reference)


def test_fp32_merges_the_adapter_for_the_call_and_unmerges_it(lora_generator):
    model = lora_generator.model
    ids = torch.tensor([lora_generator._prompt_ids()])
    reference = _logits(model, ids)
    with decoding_model(model, "fp32") as same:
        assert same is model
        torch.testing.assert_close(_logits(same, ids), reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(_logits(model, ids), reference, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="fp16"):
        with decoding_model(model, "fp16"):
            pass


def test_records_sampled_in_bf16_all_parse(lora_generator):
    frame, stats = lora_generator.sample(9, batch_size=4, temperature=1.0, seed=3, progress=False, dtype="bf16")
    assert len(frame) == stats.emitted == 9
    assert frame["r"].between(1, 5).all()


def test_generate_dtype_is_checked():
    raw = {"data": {"path": "x.csv"}, "spec": SPEC_FIELDS, "generate": {"dtype": "fp16"}}
    with pytest.raises(ConfigError, match="generate.dtype must be fp32 or bf16"):
        build_config(raw)
