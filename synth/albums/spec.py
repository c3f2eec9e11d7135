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
    description: str = field(default="A photo album.", metadata={"help": "Public one-line description of an album (in the LMs' prompts)."})

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
