"""ImagesSpec: the ``[images]`` section of a run config -- what the images are conditioned on, the
public prompts or class weights used at generation, optional public images to pretrain on.

Nothing here is read from the private images: class lists, class weights and prompts are
declared public by the user; an undeclared class distribution is a DP histogram paid from the
budget (the records road's conditioning, through ``as_dataset_spec()``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.config import check_field_types
from trainer.errors import ConfigError

from ..spec import ColumnSpec, DatasetSpec, _checked

CONDITIONING = ("none", "class", "caption")
CLASS_COLUMN = "class"


@dataclass
class ImagesSpec:
    conditioning: str = field(default="none", metadata={"help": "none, class (the imagefolder's sub-folders, or the metadata's class column) or caption (the metadata's caption column)."})
    classes: list[str] | None = field(default=None, metadata={"help": "Declared public class names (conditioning = class); an image of another class is an error."})
    class_weights: dict[str, float] | None = field(default=None, metadata={"help": "Declared public class distribution at generation; without it a DP histogram is paid for."})
    caption_column: str = field(default="text", metadata={"help": "Caption field of metadata.jsonl / metadata.csv (Hugging Face imagefolder: text)."})
    class_column: str = field(default="label", metadata={"help": "Class field of the metadata, when classes are not sub-folders."})
    privacy_unit: str = field(default="image", metadata={"help": "image (default: one image is one unit), or a metadata field naming each image's user: all of a user's images are one unit."})
    max_images_per_user: int = field(default=4, metadata={"help": "User level: images a sampled user contributes to one step at most (chosen at random each step)."})
    prompts: str | None = field(default=None, metadata={"help": "conditioning = caption: a PUBLIC text file, one caption per line, cycled through at generation."})
    public_images: str | None = field(default=None, metadata={"help": "An imagefolder of PUBLIC images: the UNet is pretrained on them without noise before DP training on the private ones (the card names it)."})
    pretrain_steps: int = field(default=0, metadata={"help": "Non-private pretraining steps on public_images (0: none)."})
    sampling_steps: int = field(default=50, metadata={"help": "DDIM steps per generated image."})
    guidance_scale: float = field(default=3.0, metadata={"help": "Classifier-free guidance at generation (caption; 1: none)."})

    def __post_init__(self):
        check_field_types(self, "images")
        if self.conditioning not in CONDITIONING:
            raise ConfigError(f"images.conditioning must be one of {', '.join(CONDITIONING)}, got {self.conditioning!r}")
        if (self.conditioning == "class") != (self.classes is not None):
            raise ConfigError("images.classes declares the public class list exactly when images.conditioning = "
                              "\"class\"")
        if self.classes is not None and (not self.classes or len(set(self.classes)) != len(self.classes)):
            raise ConfigError("images.classes must list distinct class names")
        if self.class_weights is not None:
            if self.conditioning != "class":
                raise ConfigError("images.class_weights needs images.conditioning = \"class\"")
            self.as_dataset_spec()  # weights over the declared list, checked as conditioning weights are
        if (self.conditioning == "caption") != (self.prompts is not None):
            raise ConfigError("images.prompts (a public file of captions for generation) is needed exactly when "
                              "images.conditioning = \"caption\"")
        if self.pretrain_steps < 0 or (self.pretrain_steps > 0) != (self.public_images is not None):
            raise ConfigError("images.public_images and images.pretrain_steps > 0 go together (pretraining on "
                              "public images)")
        if self.max_images_per_user < 1:
            raise ConfigError(f"images.max_images_per_user must be >= 1, got {self.max_images_per_user}")
        if self.privacy_unit in (self.caption_column, self.class_column) and self.privacy_unit != "image":
            raise ConfigError(f"images.privacy_unit {self.privacy_unit!r} is also the caption or class field")
        if self.sampling_steps < 1:
            raise ConfigError(f"images.sampling_steps must be >= 1, got {self.sampling_steps}")
        if not self.guidance_scale >= 1.0:
            raise ConfigError(f"images.guidance_scale must be >= 1, got {self.guidance_scale}")

    def as_dataset_spec(self) -> DatasetSpec:
        """The class as the records road's conditioning column (its declared weights, DP histogram), beside
        a stand-in column for the image itself (the records spec wants something to generate)."""
        image = ColumnSpec(name="image", type="text")
        if self.conditioning != "class":
            return DatasetSpec(columns=[image])
        return DatasetSpec(columns=[ColumnSpec(name=CLASS_COLUMN, type="categorical", categories=list(self.classes)),
                                    image], conditioning=[CLASS_COLUMN], conditioning_weights=self.class_weights)

    @property
    def user_field(self) -> str | None:
        return None if self.privacy_unit == "image" else self.privacy_unit

    def read_prompts(self) -> list[str]:
        path = Path(self.prompts)
        if not path.is_file():
            raise ConfigError(f"images.prompts: {path} does not exist (a text file, one public caption per line)")
        prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not prompts:
            raise ConfigError(f"images.prompts: {path} holds no caption")
        return prompts

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ImagesSpec":
        return cls(**_checked(d, cls, "images"))
