"""AlbumsSpec: bounds per level of the user -> album -> photo nesting, the split of the one budget
between the stages, and what the images come from."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from trainer.config import check_field_types
from trainer.errors import ConfigError

from ..spec import ColumnSpec, DatasetSpec, _checked

IMAGE_SOURCES = ("dp", "public", "none")


@dataclass
class AlbumsSpec:
    max_albums_per_user: int = field(default=2, metadata={"help": "Albums of one user kept for training (more are left out at random, counted)."})
    max_photos_per_album: int = field(default=8, metadata={"help": "Photos of one album kept (more are left out at random, counted); also the longest generated album."})
    summary_share: float = field(default=0.3, metadata={"help": "Share of target ε for the summary LM (composed: the stages together meet target ε)."})
    caption_share: float = field(default=0.4, metadata={"help": "Share of target ε for the caption LM; the rest goes to the images (images = dp)."})
    length_noise: float = field(default=20.0, metadata={"help": "σ of the DP histogram of album lengths (one album per user counted)."})
    images: str = field(default="dp", metadata={"help": "dp (DP fine-tune of the image model on the private photos), public (the image model as given, trained on public images only: no privacy cost) or none (text-only albums)."})
    hierarchical: bool = field(default=True, metadata={"help": "Captions written given the album's summary (true), or independently of it (false: the baseline the hierarchy is measured against)."})
    earlier_captions: int = field(default=0, metadata={"help": "Each caption is also conditioned on the album's last k earlier captions (0: on the summary only; needs hierarchical). Sampling then writes an album's captions in order, one position per round."})
    description: str = field(default="A photo album.", metadata={"help": "Public one-line description of an album (in the LMs' prompts)."})
    image_pipeline: str | None = field(default=None, metadata={"help": "Local folder of a PUBLIC diffusers text-to-image pipeline that draws the photos (images = public; no privacy cost; the card names it)."})
    public_images: str | None = field(default=None, metadata={"help": "An imagefolder of PUBLIC captioned images (metadata.jsonl with text): the image model is pretrained on them without noise first (the card names it)."})
    pretrain_steps: int = field(default=0, metadata={"help": "Non-private pretraining steps of the image model on public_images."})
    image_steps: int | None = field(default=None, metadata={"help": "DP steps of the image model (default: train.steps)."})
    sampling_steps: int = field(default=25, metadata={"help": "DDIM steps per generated photo."})
    guidance_scale: float = field(default=3.0, metadata={"help": "Classifier-free guidance of the photos on their captions."})
    captioner: str | None = field(default=None, metadata={"help": "Local folder of a PUBLIC image-to-text model that captions photos given without a caption (what it writes is private data, trained on with DP, never exported)."})
    summariser: str | None = field(default=None, metadata={"help": "Local folder of a PUBLIC causal LM (or smollm2) that writes a missing album summary from the album's captions."})
    max_new_tokens: int = field(default=48, metadata={"help": "Longest generated summary or caption, in tokens."})

    def __post_init__(self):
        check_field_types(self, "albums")
        for name in ("max_albums_per_user", "max_photos_per_album"):
            if getattr(self, name) < 1:
                raise ConfigError(f"albums.{name} must be >= 1, got {getattr(self, name)}")
        if self.images not in IMAGE_SOURCES:
            raise ConfigError(f"albums.images must be one of {', '.join(IMAGE_SOURCES)}, got {self.images!r}")
        for name in ("summary_share", "caption_share"):
            if not (math.isfinite(getattr(self, name)) and 0 < getattr(self, name) < 1):
                raise ConfigError(f"albums.{name} must be in (0, 1), got {getattr(self, name)}")
        if self.images == "dp" and self.summary_share + self.caption_share >= 1:
            raise ConfigError(f"albums.summary_share + caption_share = {self.summary_share + self.caption_share} "
                              "leaves nothing for the DP image stage: keep the sum below 1")
        if (self.pretrain_steps > 0) != (self.public_images is not None) or self.pretrain_steps < 0:
            raise ConfigError("albums.public_images and albums.pretrain_steps > 0 go together")
        if self.image_pipeline is not None and (self.images != "public" or self.public_images is not None):
            raise ConfigError("albums.image_pipeline draws the photos from a public pipeline as it is: it goes with "
                              "images = \"public\" and without public_images (nothing is trained)")
        if self.images == "public" and self.public_images is None and self.image_pipeline is None:
            raise ConfigError("albums.images = \"public\" draws the photos from a model trained on public images only: "
                              "give albums.public_images and pretrain_steps (or a pretrained image_model.model), or albums.image_pipeline")
        if self.earlier_captions < 0 or (self.earlier_captions > 0 and not self.hierarchical):
            raise ConfigError(f"albums.earlier_captions = {self.earlier_captions}: give k >= 0, and k > 0 only with "
                              "hierarchical = true")
        if self.image_steps is not None and self.image_steps < 1:
            raise ConfigError(f"albums.image_steps must be >= 1, got {self.image_steps}")
        if not (math.isfinite(self.length_noise) and self.length_noise > 0):
            raise ConfigError(f"albums.length_noise must be > 0, got {self.length_noise}")

    @property
    def shares(self) -> dict[str, float]:
        """ε share of each DP stage (the length histogram is paid inside the summary share)."""
        out = {"summary_lm": self.summary_share, "caption_lm": self.caption_share}
        if self.images == "dp":
            out["unet"] = 1.0 - self.summary_share - self.caption_share
        else:
            out["caption_lm"] = 1.0 - self.summary_share
        return out

    def length_spec(self) -> DatasetSpec:
        """Album length (photos) as an integer conditioning column over its public range 1..max."""
        return DatasetSpec(columns=[ColumnSpec(name="photos", type="integer", min=1, max=self.max_photos_per_album),
                                    ColumnSpec(name="album", type="text")], conditioning=["photos"])

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AlbumsSpec":
        return cls(**_checked(d, cls, "albums"))
