"""ImageGenerator: a diffusers UNet DP-trained with the Diffusion objective, sampled with DDIM.

Three kinds of conditioning:

* none: ``UNet2DModel``;
* class labels (``classes``: a declared public list of class names; the class distribution at
  generation is given by the caller, declared public or a DP histogram): ``UNet2DModel`` with
  ``num_class_embeds``;
* captions (``captions = true``): ``UNet2DConditionModel`` with cross-attention on the caption's
  token embeddings from a frozen public sentence encoder (all-MiniLM-L6-v2 offline, 384-d).
  Captions are dropped (replaced by the empty caption) with ``caption_dropout`` during training,
  and sampling uses classifier-free guidance.

The model is small by default (CPU presets ``tiny`` and ``small``); a user's pretrained UNet (a
folder in diffusers' layout, e.g. pretrained on public images) can be loaded instead and DP
fine-tuned, fully or with LoRA on the attention projections (peft; merged into the weights when
saved, so the saved UNet is a plain diffusers one).  ``save_pretrained`` writes diffusers' layout
(``unet/``, ``scheduler/``) with the privacy ledger beside the weights.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from trainer import PrivacyLedger, TrainConfig, train_model
from trainer.errors import ConfigError
from trainer.io import atomic_directory
from trainer.objectives import Diffusion

from ..saved_meta import read_meta

KIND = "dpsynth.ImageGenerator"
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
PRESETS = {
    "tiny": dict(block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
                 down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D")),
    "small": dict(block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=8,
                  down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
                  up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D")),
}
# caption-conditional twins: the attention blocks attend to the caption too
CROSS = {"AttnDownBlock2D": "CrossAttnDownBlock2D", "AttnUpBlock2D": "CrossAttnUpBlock2D"}


def _conditional_preset(name: str) -> dict:
    p = dict(PRESETS[name])
    p["down_block_types"] = tuple(CROSS.get(b, b) for b in p["down_block_types"])
    p["up_block_types"] = tuple(CROSS.get(b, b) for b in p["up_block_types"])
    return p


@dataclass
class UNetChoice:
    model: str = field(default="tiny", metadata={"help": "tiny or small (built from scratch), or a folder with a pretrained diffusers UNet2DModel (e.g. trained on public images)."})
    image_size: int = field(default=32, metadata={"help": "Image side in pixels."})
    channels: int = field(default=3, metadata={"help": "1 (grayscale) or 3 (RGB)."})
    classes: list[str] | None = field(default=None, metadata={"help": "Declared public class names for a class-conditional model (None: unconditional)."})
    multiplicity: int = field(default=1, metadata={"help": "K (t, noise) draws per image per step, averaged inside its unit (DPDM)."})
    train_timesteps: int = field(default=1000, metadata={"help": "Diffusion steps of the noise schedule."})
    captions: bool = field(default=False, metadata={"help": "Caption-conditional (UNet2DConditionModel with cross-attention on caption embeddings)."})
    caption_encoder: str | None = field(default=None, metadata={"help": "Sentence-transformers folder for caption token embeddings (default: all-MiniLM-L6-v2, offline; public, frozen)."})
    caption_tokens: int = field(default=24, metadata={"help": "Caption tokens kept (with [CLS] and [SEP]); longer captions are cut."})
    caption_dropout: float = field(default=0.1, metadata={"help": "Share of training rows whose caption is dropped, for classifier-free guidance."})
    finetune: str = field(default="full", metadata={"help": "full, or lora (a pretrained folder only: LoRA on the attention projections)."})
    lora_rank: int = field(default=8, metadata={"help": "LoRA rank r (finetune = lora)."})

    def __post_init__(self):
        from trainer.config import check_field_types

        check_field_types(self, "model")
        if self.captions and self.classes is not None:
            raise ConfigError("model.captions and model.classes exclude one another: condition on one")
        if not 0.0 <= self.caption_dropout < 1.0:
            raise ConfigError(f"model.caption_dropout must be in [0, 1), got {self.caption_dropout}")
        if self.caption_tokens < 2:
            raise ConfigError(f"model.caption_tokens must be at least 2, got {self.caption_tokens}")
        if self.finetune not in ("full", "lora"):
            raise ConfigError(f"model.finetune must be full or lora, got {self.finetune!r}")
        if self.finetune == "lora" and self.model in PRESETS:
            raise ConfigError("model.finetune = lora needs a pretrained UNet folder as model.model (a preset "
                              "starts from random weights: train it fully)")
        if self.lora_rank < 1:
            raise ConfigError(f"model.lora_rank must be >= 1, got {self.lora_rank}")
        if self.channels not in (1, 3):
            raise ConfigError(f"model.channels must be 1 or 3, got {self.channels}")
        if self.image_size < 8 or self.image_size % 4:
            raise ConfigError(f"model.image_size must be a multiple of 4, at least 8; got {self.image_size}")
        if self.model not in PRESETS and not (Path(self.model) / "config.json").is_file():
            raise ConfigError(f"model.model {self.model!r} is neither a preset ({', '.join(PRESETS)}) nor a folder with "
                              "a diffusers config.json")
        if self.classes is not None and len(set(self.classes)) != len(self.classes):
            raise ConfigError("model.classes names a class twice")


def _unet_class(folder: Path):
    import diffusers

    name = json.loads((folder / "config.json").read_text()).get("_class_name", "UNet2DModel")
    if name not in ("UNet2DModel", "UNet2DConditionModel"):
        raise ConfigError(f"{folder}: a {name}; dpsynth trains UNet2DModel or UNet2DConditionModel")
    return getattr(diffusers, name)


class ImageGenerator:
    def __init__(self, choice: UNetChoice | None = None, *, _unet=None):
        from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel, UNet2DModel

        self.choice = choice or UNetChoice()
        c = self.choice
        if _unet is not None:
            self.unet = _unet
        elif c.model in PRESETS and c.captions:
            self.unet = UNet2DConditionModel(sample_size=c.image_size, in_channels=c.channels,
                                             out_channels=c.channels, attention_head_dim=8,
                                             cross_attention_dim=self.encoder.dimension, **_conditional_preset(c.model))
        elif c.model in PRESETS:
            self.unet = UNet2DModel(sample_size=c.image_size, in_channels=c.channels, out_channels=c.channels,
                                    attention_head_dim=8, num_class_embeds=len(c.classes) if c.classes else None,
                                    **PRESETS[c.model])
        else:
            self.unet = _unet_class(Path(c.model)).from_pretrained(c.model, torch_dtype=torch.float32)
        self.unet.float()
        self._check_model()
        self.noise_scheduler = DDPMScheduler(num_train_timesteps=c.train_timesteps)
        self.sampler = DDIMScheduler.from_config(self.noise_scheduler.config)
        self.ledger: PrivacyLedger | None = None
        self.conditioning = None  # class distribution at generation (ConditioningDistribution), if any

    def _check_model(self) -> None:
        c, cfg = self.choice, self.unet.config
        conditional = type(self.unet).__name__ == "UNet2DConditionModel"
        if conditional != c.captions:
            raise ConfigError(f"model.model {c.model!r} is a {type(self.unet).__name__}: set model.captions = "
                              f"{str(conditional).lower()}")
        if cfg.in_channels != c.channels or cfg.sample_size != c.image_size:
            raise ConfigError(f"model.model {c.model!r} takes {cfg.in_channels} channels at {cfg.sample_size} px; "
                              f"model.channels / model.image_size say {c.channels} at {c.image_size}")
        if c.captions and cfg.cross_attention_dim != self.encoder.dimension:
            raise ConfigError(f"model.model {c.model!r} attends to {cfg.cross_attention_dim}-d captions, the caption "
                              f"encoder gives {self.encoder.dimension}-d")

    @property
    def encoder(self):
        """The frozen public caption encoder (loaded on first use)."""
        if getattr(self, "_encoder", None) is None:
            from evaluation.encoder import Encoder

            self._encoder = Encoder(self.choice.caption_encoder)
        return self._encoder

    def caption_inputs(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(token embeddings (n, L, d), mask (n, L)) of the captions, L = model.caption_tokens."""
        emb, mask = self.encoder.token_embeddings(list(captions), self.choice.caption_tokens)
        return torch.from_numpy(emb), torch.from_numpy(mask)

    @property
    def description(self) -> str:
        if getattr(self, "trained_as", None):  # reloaded: say how it was trained
            return self.trained_as
        c = self.choice
        n = sum(p.numel() for p in self.unet.parameters())
        what = f"{type(self.unet).__name__} ({c.model}, {n / 1e6:.2f} M parameters, {c.image_size} px)"
        if c.finetune == "lora":
            what += f", LoRA r={c.lora_rank} on {LORA_TARGETS}"
        if c.captions:
            what += f", cross-attention on {self.encoder.name} token embeddings (frozen, public)"
        return what

    def examples(self, images: list[torch.Tensor], labels: list[str] | None = None) -> list[dict]:
        """Training examples; ``labels`` are class names (``classes``) or captions (``captions``)."""
        c = self.choice
        conditional = c.classes is not None or c.captions
        if (labels is None) == conditional:
            raise ConfigError("give class labels exactly when the model is class-conditional (model.classes), "
                              "captions exactly when it is caption-conditional (model.captions)")
        if labels is not None and len(labels) != len(images):
            raise ConfigError(f"{len(images)} images but {len(labels)} labels / captions")
        emb = mask = None
        if c.captions:
            emb, mask = self.caption_inputs(labels)
        out = []
        for i, x in enumerate(images):
            if tuple(x.shape) != (c.channels, c.image_size, c.image_size):
                raise ConfigError(f"image {i} has shape {tuple(x.shape)}, the model takes "
                                  f"({c.channels}, {c.image_size}, {c.image_size})")
            ex = {"pixel_values": x}
            if c.classes is not None:
                if labels[i] not in c.classes:
                    raise ConfigError(f"image {i}: class {labels[i]!r} is not among the declared {c.classes}")
                ex["class_labels"] = c.classes.index(labels[i])
            elif emb is not None:
                ex["encoder_hidden_states"], ex["encoder_attention_mask"] = emb[i], mask[i]
            out.append(ex)
        return out

    def _objective(self) -> Diffusion:
        c = self.choice
        if not c.captions or not c.caption_dropout:
            return Diffusion(self.noise_scheduler, multiplicity=c.multiplicity)
        emb, mask = self.caption_inputs([""])
        return Diffusion(self.noise_scheduler, multiplicity=c.multiplicity, condition_dropout=c.caption_dropout,
                         null_condition={"encoder_hidden_states": emb[0], "encoder_attention_mask": mask[0]})

    def _add_lora(self) -> None:
        from peft import LoraConfig

        self.unet.requires_grad_(False)
        self.unet.add_adapter(LoraConfig(r=self.choice.lora_rank, lora_alpha=self.choice.lora_rank,
                                         init_lora_weights="gaussian", target_modules=LORA_TARGETS))
        if not any(p.requires_grad for p in self.unet.parameters()):
            raise ConfigError(f"model.finetune = lora: {self.choice.model!r} has no attention projections "
                              f"({LORA_TARGETS}) to adapt; use finetune = full")

    def _merge_lora(self) -> None:
        if any("lora_" in n for n, _ in self.unet.named_parameters()):
            self.unet.fuse_lora()
            self.unet.unload_lora()
            self.unet.requires_grad_(True)

    def fit(self, images, config: TrainConfig, *, labels=None, units=None, output_dir=None, ledger=None,
            stage: str = "unet"):
        """DP-train on private images (one image per unit, or a user's images with ``units``).
        ``labels``: class names or captions, one per image, when the model is conditional."""
        examples = self.examples(images, labels)
        if self.choice.finetune == "lora":
            self._add_lora()
        try:
            result = train_model(self.unet, examples, config, units=units, output_dir=output_dir, ledger=ledger,
                                 objective=self._objective(), stage=stage)
        finally:
            self._merge_lora()
        self.ledger = result.ledger
        return result

    def pretrain_public(self, images, labels, like: TrainConfig, *, steps: int, output_dir=None,
                        progress: bool = True) -> None:
        """Non-private training on PUBLIC images (before DP fine-tuning): ``like``'s batches and learning
        rate, ``steps`` steps, no noise and nothing in the ledger (it reads no private data)."""
        pre = TrainConfig(non_private=True, expected_batch_size=like.expected_batch_size,
                          physical_batch_size=like.physical_batch_size, steps=steps,
                          learning_rate=like.learning_rate, progress=progress and like.progress)
        self.fit(images, pre, labels=labels, output_dir=output_dir, stage="public_pretraining")
        self.ledger = None  # public data: nothing to account; the DP stage starts its own ledger

    @torch.no_grad()
    def sample(self, n: int, *, steps: int = 50, batch_size: int = 64, classes: list[str] | None = None,
               captions: list[str] | None = None, guidance_scale: float = 3.0, seed: int | None = None,
               progress: bool = False) -> torch.Tensor:
        """(n, C, H, W) images in [-1, 1] by DDIM; ``classes``: one class name per image (class-conditional
        models); ``captions``: one caption per image (caption-conditional), with classifier-free guidance
        of ``guidance_scale`` (1: none)."""
        from tqdm.auto import tqdm

        c = self.choice
        if (classes is None) != (c.classes is None):
            raise ConfigError("give one class per image exactly when the model is class-conditional")
        if (captions is None) == c.captions:
            raise ConfigError("give one caption per image exactly when the model is caption-conditional")
        wanted = classes if classes is not None else captions
        if wanted is not None and len(wanted) != n:
            raise ConfigError(f"{n} images asked for but {len(wanted)} classes / captions given")
        if classes is not None and (unknown := sorted(set(classes) - set(c.classes))):
            raise ConfigError(f"classes {unknown} are not among the model's {c.classes}")
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        self.sampler.set_timesteps(steps)
        device = next(self.unet.parameters()).device
        was_training = self.unet.training
        self.unet.eval()
        out = []
        null = self.caption_inputs([""]) if c.captions else None
        try:
            for start in tqdm(range(0, n, batch_size), disable=not progress, desc="sampling images", unit="batch"):
                b = min(batch_size, n - start)
                x = torch.randn((b, c.channels, c.image_size, c.image_size), generator=gen).to(device)
                kw = {}
                if classes is not None:
                    kw["class_labels"] = torch.tensor([c.classes.index(k) for k in classes[start:start + b]],
                                                      device=device)
                guided = c.captions and guidance_scale != 1.0
                if c.captions:
                    emb, mask = self.caption_inputs(captions[start:start + b])
                    if guided:  # one forward for conditional and unconditional halves
                        emb = torch.cat([emb, null[0].expand(b, -1, -1)])
                        mask = torch.cat([mask, null[1].expand(b, -1)])
                    kw = {"encoder_hidden_states": emb.to(device), "encoder_attention_mask": mask.to(device)}
                for t in self.sampler.timesteps:
                    if guided:
                        eps_c, eps_u = self.unet(torch.cat([x, x]), t, **kw).sample.chunk(2)
                        eps = eps_u + guidance_scale * (eps_c - eps_u)
                    else:
                        eps = self.unet(x, t, **kw).sample
                    x = self.sampler.step(eps, t, x, generator=gen).prev_sample
                out.append(x.clamp(-1, 1).cpu())
        finally:
            self.unet.train(was_training)
        return torch.cat(out) if out else torch.zeros((0, c.channels, c.image_size, c.image_size))

    def save_pretrained(self, directory: str | Path) -> None:
        """diffusers' layout (unet/, scheduler/) plus dpsynth_config.json and the privacy ledger."""
        with atomic_directory(directory) as tmp:
            self.unet.save_pretrained(tmp / "unet")
            self.noise_scheduler.save_pretrained(tmp / "scheduler")
            meta = {"kind": KIND, "model": asdict(self.choice), "description": self.description}
            (tmp / "dpsynth_config.json").write_text(json.dumps(meta, indent=2))
            if self.ledger is not None:
                self.ledger.save(tmp / "privacy_ledger.json")
            if self.conditioning is not None:
                (tmp / "conditioning.json").write_text(json.dumps(self.conditioning.to_dict(), indent=2))

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "ImageGenerator":
        directory = Path(directory)
        meta = read_meta(directory, KIND)
        if meta is None:
            raise FileNotFoundError(f"{directory} is not a saved dpsynth image generator")
        # what was trained (full or LoRA-merged) is a plain UNet in unet/: reload it as a pretrained folder
        choice = UNetChoice(**{**meta["model"], "model": str(directory / "unet"), "finetune": "full"})
        gen = cls(choice, _unet=_unet_class(directory / "unet").from_pretrained(directory / "unet",
                                                                                 torch_dtype=torch.float32))
        gen.trained_as = meta.get("description")
        if (directory / "privacy_ledger.json").exists():
            gen.ledger = PrivacyLedger.load(directory / "privacy_ledger.json")
        if (directory / "conditioning.json").exists():
            from ..conditioning import ConditioningDistribution

            gen.conditioning = ConditioningDistribution.from_dict(json.loads((directory / "conditioning.json").read_text()))
        return gen
