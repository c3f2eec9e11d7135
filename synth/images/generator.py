"""ImageGenerator: a diffusers UNet2DModel DP-trained with the Diffusion objective, sampled with DDIM.

Unconditional, or class-conditional (``classes``: a declared public list of class names; the
class distribution at generation is given by the caller, declared public or a DP histogram).
The model is small by default (a CPU preset: ``tiny`` 0.2 M parameters at 16-32 px, ``small``
1.6 M); a user's pretrained UNet (a folder in diffusers' layout, e.g. pretrained on public
images) can be loaded instead and DP fine-tuned.  ``save_pretrained`` writes diffusers' layout
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

KIND = "dpsynth.ImageGenerator"
PRESETS = {
    "tiny": dict(block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
                 down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D")),
    "small": dict(block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=8,
                  down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
                  up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D")),
}


@dataclass
class UNetChoice:
    model: str = field(default="tiny", metadata={"help": "tiny or small (built from scratch), or a folder with a pretrained diffusers UNet2DModel (e.g. trained on public images)."})
    image_size: int = field(default=32, metadata={"help": "Image side in pixels."})
    channels: int = field(default=3, metadata={"help": "1 (grayscale) or 3 (RGB)."})
    classes: list[str] | None = field(default=None, metadata={"help": "Declared public class names for a class-conditional model (None: unconditional)."})
    multiplicity: int = field(default=1, metadata={"help": "K (t, noise) draws per image per step, averaged inside its unit (DPDM)."})
    train_timesteps: int = field(default=1000, metadata={"help": "Diffusion steps of the noise schedule."})

    def __post_init__(self):
        from trainer.config import check_field_types

        check_field_types(self, "model")
        if self.channels not in (1, 3):
            raise ConfigError(f"model.channels must be 1 or 3, got {self.channels}")
        if self.image_size < 8 or self.image_size % 4:
            raise ConfigError(f"model.image_size must be a multiple of 4, at least 8; got {self.image_size}")
        if self.model not in PRESETS and not (Path(self.model) / "config.json").is_file():
            raise ConfigError(f"model.model {self.model!r} is neither a preset ({', '.join(PRESETS)}) nor a folder with "
                              "a diffusers config.json")
        if self.classes is not None and len(set(self.classes)) != len(self.classes):
            raise ConfigError("model.classes names a class twice")


class ImageGenerator:
    def __init__(self, choice: UNetChoice | None = None, *, _unet=None):
        from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

        self.choice = choice or UNetChoice()
        c = self.choice
        if _unet is not None:
            self.unet = _unet
        elif c.model in PRESETS:
            self.unet = UNet2DModel(sample_size=c.image_size, in_channels=c.channels, out_channels=c.channels,
                                    attention_head_dim=8, num_class_embeds=len(c.classes) if c.classes else None,
                                    **PRESETS[c.model])
        else:
            self.unet = UNet2DModel.from_pretrained(c.model, torch_dtype=torch.float32)
        self.unet.float()
        self.noise_scheduler = DDPMScheduler(num_train_timesteps=c.train_timesteps)
        self.sampler = DDIMScheduler.from_config(self.noise_scheduler.config)
        self.ledger: PrivacyLedger | None = None

    def examples(self, images: list[torch.Tensor], labels: list[str] | None = None) -> list[dict]:
        c = self.choice
        if (labels is None) != (c.classes is None):
            raise ConfigError("give class labels exactly when the model is class-conditional (model.classes)")
        out = []
        for i, x in enumerate(images):
            if tuple(x.shape) != (c.channels, c.image_size, c.image_size):
                raise ConfigError(f"image {i} has shape {tuple(x.shape)}, the model takes "
                                  f"({c.channels}, {c.image_size}, {c.image_size})")
            ex = {"pixel_values": x}
            if labels is not None:
                if labels[i] not in c.classes:
                    raise ConfigError(f"image {i}: class {labels[i]!r} is not among the declared {c.classes}")
                ex["class_labels"] = c.classes.index(labels[i])
            out.append(ex)
        return out

    def fit(self, images, config: TrainConfig, *, labels=None, units=None, output_dir=None, ledger=None,
            stage: str = "unet"):
        """DP-train on private images (one image per unit, or a user's images with ``units``)."""
        objective = Diffusion(self.noise_scheduler, multiplicity=self.choice.multiplicity)
        result = train_model(self.unet, self.examples(images, labels), config, units=units, output_dir=output_dir,
                             ledger=ledger, objective=objective, stage=stage)
        self.ledger = result.ledger
        return result

    @torch.no_grad()
    def sample(self, n: int, *, steps: int = 50, batch_size: int = 64, classes: list[str] | None = None,
               seed: int | None = None) -> torch.Tensor:
        """(n, C, H, W) images in [-1, 1] by DDIM; ``classes``: one class name per image (conditional models)."""
        c = self.choice
        if (classes is None) != (c.classes is None):
            raise ConfigError("give one class per image exactly when the model is class-conditional")
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        self.sampler.set_timesteps(steps)
        was_training = self.unet.training
        self.unet.eval()
        out = []
        try:
            for start in range(0, n, batch_size):
                b = min(batch_size, n - start)
                x = torch.randn((b, c.channels, c.image_size, c.image_size), generator=gen)
                kw = {}
                if classes is not None:
                    kw["class_labels"] = torch.tensor([c.classes.index(k) for k in classes[start:start + b]])
                for t in self.sampler.timesteps:
                    eps = self.unet(x, t, **kw).sample
                    x = self.sampler.step(eps, t, x, generator=gen).prev_sample
                out.append(x.clamp(-1, 1))
        finally:
            self.unet.train(was_training)
        return torch.cat(out) if out else torch.zeros((0, c.channels, c.image_size, c.image_size))

    def save_pretrained(self, directory: str | Path) -> None:
        """diffusers' layout (unet/, scheduler/) plus dpsynth_config.json and the privacy ledger."""
        with atomic_directory(directory) as tmp:
            self.unet.save_pretrained(tmp / "unet")
            self.noise_scheduler.save_pretrained(tmp / "scheduler")
            (tmp / "dpsynth_config.json").write_text(json.dumps({"kind": KIND, "model": asdict(self.choice)}, indent=2))
            if self.ledger is not None:
                self.ledger.save(tmp / "privacy_ledger.json")

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "ImageGenerator":
        from diffusers import UNet2DModel

        directory = Path(directory)
        meta_path = directory / "dpsynth_config.json"
        if not meta_path.is_file() or json.loads(meta_path.read_text()).get("kind") != KIND:
            raise FileNotFoundError(f"{directory} is not a saved dpsynth image generator")
        choice = UNetChoice(**json.loads(meta_path.read_text())["model"])
        gen = cls(choice, _unet=UNet2DModel.from_pretrained(directory / "unet", torch_dtype=torch.float32))
        if (directory / "privacy_ledger.json").exists():
            gen.ledger = PrivacyLedger.load(directory / "privacy_ledger.json")
        return gen
