"""The model roads of an LM generator, and reloading what was trained.

* a pretrained Hugging Face causal LM (a local folder, a hub id, or ``"smollm2"``, the
  offline default) with its own public tokenizer, fine-tuned with LoRA (default) or fully;
* ``"scratch"``: a small Llama-style model with a byte-level tokenizer, trained from
  scratch (``scratch_size``: ``tiny`` for tests, ``small``).

Models are always loaded in fp32: DP sums clipped gradients in the parameters' dtype,
and bf16 rounding would break the bound on one unit's influence.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

SCRATCH_SIZES = {"tiny": dict(hidden=64, layers=2), "small": dict(hidden=256, layers=4)}
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class ModelChoice:
    model: str = field(default="smollm2", metadata={"help": "smollm2 (offline default), scratch, or a local folder / hub id of a causal LM."})
    finetune: str = field(default="lora", metadata={"help": "lora or full (pretrained road)."})
    lora_rank: int = field(default=8, metadata={"help": "LoRA rank r."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha."})
    lora_targets: list[str] | None = field(default=None, metadata={
        "help": "Module names LoRA adapts, e.g. [\"q_proj\", \"v_proj\"] (default: every attention and MLP "
                "projection the model has). Fewer adapted coordinates: less DP noise in total, less capacity."})
    scratch_size: str = field(default="tiny", metadata={"help": "Size of the from-scratch model: tiny or small."})

    def __post_init__(self):
        from trainer.config import check_field_types
        from trainer.errors import ConfigError

        check_field_types(self, "model")
        if self.finetune not in ("lora", "full"):
            raise ConfigError(f"model.finetune must be lora or full, got {self.finetune!r}")
        if self.scratch_size not in SCRATCH_SIZES:
            raise ConfigError(f"model.scratch_size must be one of {', '.join(SCRATCH_SIZES)}, got {self.scratch_size!r}")
        if self.lora_rank < 1 or self.lora_alpha < 1:
            raise ConfigError(f"model.lora_rank and model.lora_alpha must be >= 1, got {self.lora_rank}, {self.lora_alpha}")
        if self.lora_targets is not None and (not self.lora_targets or not all(
                isinstance(t, str) and t for t in self.lora_targets)):
            raise ConfigError(f"model.lora_targets must be a non-empty list of module names, got {self.lora_targets!r}")

    def check_source(self) -> None:
        """Fail before any work when a user model cannot be found: a local folder must hold a
        config.json; anything else must load as a hub id (from the local cache when offline)."""
        from trainer.errors import ConfigError

        if self.model in ("smollm2", "scratch"):
            return
        folder = Path(self.model).expanduser()
        if folder.exists():
            if not (folder / "config.json").is_file():
                raise ConfigError(f"model {self.model}: the folder has no config.json (save the model with "
                                  "save_pretrained)")
            return
        try:
            from transformers import AutoConfig

            AutoConfig.from_pretrained(self.model)
        except Exception as err:  # transformers raises OSError / ValueError / HF errors here
            raise ConfigError(f"model {self.model!r} is neither a local folder nor a loadable hub id "
                              f"({type(err).__name__}: {str(err).splitlines()[0][:160]}); give the path of a "
                              "folder saved with save_pretrained, or smollm2 / scratch") from None


def build_model(choice: ModelChoice):
    """(model, TextTokenizer, description) for the chosen road."""
    from .models import load_smollm2, load_smollm2_tokenizer, tiny_llama_config
    from .tokenizers import TextTokenizer

    if choice.model == "scratch":
        from transformers import LlamaForCausalLM

        tok = TextTokenizer.bytes()
        size = SCRATCH_SIZES[choice.scratch_size]
        model = LlamaForCausalLM(tiny_llama_config(259, max_len=2048, **size))
        return model, tok, f"Llama-style {choice.scratch_size} from scratch, byte-level tokenizer"
    if choice.model == "smollm2":
        model, tok, name = load_smollm2(), TextTokenizer.hf(load_smollm2_tokenizer(), "SmolLM2-135M-Instruct"), "SmolLM2-135M-Instruct (GGUF, offline)"
    else:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        # fp32 whatever dtype the checkpoint was saved in: DP sums clipped gradients in the
        # parameters' dtype, and bf16 rounding would break the bound on one record's influence
        model = AutoModelForCausalLM.from_pretrained(choice.model, dtype=torch.float32)
        tok = TextTokenizer.hf(AutoTokenizer.from_pretrained(choice.model), choice.model)
        name = choice.model
    if choice.finetune == "lora":
        from peft import LoraConfig, get_peft_model

        present = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
        if choice.lora_targets is not None:
            missing = [t for t in choice.lora_targets if t not in present]
            if missing:
                from trainer.errors import ConfigError

                linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                                 if type(m).__name__ in ("Linear", "Conv1D")})
                raise ConfigError(f"model.lora_targets names modules {name} does not have: {missing}; its linear "
                                  f"modules are named {linear}")
            targets = list(choice.lora_targets)
        else:
            targets = [t for t in LORA_TARGETS if t in present] or "all-linear"
        model = get_peft_model(model, LoraConfig(r=choice.lora_rank, lora_alpha=choice.lora_alpha, lora_dropout=0.0, target_modules=targets))
        name += f", LoRA r={choice.lora_rank} on {targets}"
    else:
        name += ", full fine-tuning"
    return model, tok, name



def load_trained(choice: ModelChoice, folder: Path):
    """The trained model saved in ``folder``: a full model, or a LoRA adapter over the base."""
    from .tokenizers import TextTokenizer

    if choice.model == "scratch":
        from transformers import LlamaForCausalLM

        return LlamaForCausalLM.from_pretrained(folder), TextTokenizer.bytes(), None
    if choice.finetune == "lora":
        from peft import PeftModel

        base, tok, _ = build_model(ModelChoice(**{**asdict(choice), "finetune": "full"}))
        return PeftModel.from_pretrained(base, folder), tok, None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32), TextTokenizer.hf(AutoTokenizer.from_pretrained(folder), str(folder)), None
