"""A user's public diffusers text-to-image pipeline, loaded by local path, drawing photos from captions.

It never sees private data (nothing is trained), so its photos cost no privacy; the card names it as
declared public.  Any ``DiffusionPipeline`` that takes ``prompt``, ``num_inference_steps``,
``guidance_scale``, ``height`` / ``width``, ``generator`` and ``output_type="pt"`` works (Stable
Diffusion and its kin).  Loaded with ``local_files_only``: never downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from trainer.errors import ConfigError


def check_pipeline_folder(path: str) -> Path:
    folder = Path(path).expanduser()
    if not (folder / "model_index.json").is_file():
        raise ConfigError(f"image pipeline {path!r}: not a local diffusers pipeline folder with a model_index.json "
                          "(save it with pipeline.save_pretrained; pipelines are never downloaded)")
    return folder


class PublicTextToImage:
    def __init__(self, path: str, *, image_size: int):
        from diffusers import DiffusionPipeline

        folder = check_pipeline_folder(path)
        try:
            self.pipe = DiffusionPipeline.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"image pipeline {path!r} does not load as a diffusers pipeline: "
                              f"{type(err).__name__}: {str(err).splitlines()[0][:200]}") from err
        self.path, self.image_size = str(path), image_size
        self.description = (f"public text-to-image pipeline {path} ({type(self.pipe).__name__}, by path; trained on "
                            "no private photo, no privacy cost)")
        self.ledger = None

    @torch.no_grad()
    def sample(self, n: int, *, steps: int = 25, captions: list[str], guidance_scale: float = 3.0,
               seed: int | None = None, batch_size: int = 16, progress: bool = False) -> torch.Tensor:
        """(n, 3, S, S) images in [-1, 1], one per caption."""
        if len(captions) != n:
            raise ConfigError(f"{n} images asked for but {len(captions)} captions given")
        self.pipe.set_progress_bar_config(disable=True)
        out = []
        for start in tqdm(range(0, n, batch_size), desc="photos", disable=not progress):
            generator = torch.Generator().manual_seed(seed + start) if seed is not None else None
            images = self.pipe(prompt=captions[start:start + batch_size], num_inference_steps=steps,
                               guidance_scale=guidance_scale, height=self.image_size, width=self.image_size,
                               generator=generator, output_type="pt").images
            out.append(torch.as_tensor(images).float() * 2 - 1)
        return torch.cat(out) if out else torch.zeros(0, 3, self.image_size, self.image_size)
