"""Text for albums that come without it: a public image-to-text model, named by local path, writes each
uncaptioned photo's caption; a public causal LM (a local path, or ``smollm2``, the offline default)
writes a missing album summary from the album's captions.

What they write is still private data (it is made from private photos): the DP LMs train on it, and it
is never exported.  The models themselves must be public (the card names them as declared public); they
are loaded from disk only (``local_files_only``), never from the network.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from trainer.errors import ConfigError

from .folder import AlbumRecord

SUMMARY_INSTRUCTION = "These are the captions of the photos in one photo album. Write a short title for the album."


@dataclass
class DescribeReport:
    captions_made: int = 0
    summaries_made: int = 0
    captioner: str | None = None
    summariser: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _local_folder(path: str, what: str) -> Path:
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise ConfigError(f"albums.{what} = {path!r}: not a local model folder with a config.json (save the model, its "
                          "processor and tokenizer with save_pretrained; models are never downloaded)")
    return folder


def _pil(image: torch.Tensor):
    from PIL import Image

    arr = ((image.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(arr.squeeze(-1) if arr.shape[-1] == 1 else arr).convert("RGB")


class Captioner:
    """An image-to-text model (``AutoModelForImageTextToText``: e.g. a vision encoder-decoder, BLIP, GIT)."""

    def __init__(self, path: str, *, max_new_tokens: int = 24):
        from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

        folder = _local_folder(path, "captioner")
        try:
            self.model = AutoModelForImageTextToText.from_pretrained(folder, local_files_only=True).eval()
            self.processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
            self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, KeyError) as err:
            raise ConfigError(f"albums.captioner = {path!r} does not load as an image-to-text model with its image "
                              f"processor and tokenizer: {type(err).__name__}: {str(err).splitlines()[0][:200]}") from err
        self.name, self.max_new_tokens = str(path), max_new_tokens

    @torch.no_grad()
    def __call__(self, images: list[torch.Tensor], batch_size: int = 16) -> list[str]:
        out = []
        for i in range(0, len(images), batch_size):
            pixels = self.processor(images=[_pil(im) for im in images[i:i + batch_size]], return_tensors="pt")
            ids = self.model.generate(pixel_values=pixels["pixel_values"], max_new_tokens=self.max_new_tokens,
                                      do_sample=False)
            out += [t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]
        return out


class Summariser:
    """A causal LM prompted with an album's captions; greedy, one line."""

    def __init__(self, path: str, *, max_new_tokens: int = 24):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ..lm.models import load_smollm2, load_smollm2_tokenizer

        if path == "smollm2":
            self.model, self.tokenizer = load_smollm2(), load_smollm2_tokenizer()
        else:
            folder = _local_folder(path, "summariser")
            try:
                self.model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
                self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            except (OSError, ValueError, KeyError) as err:
                raise ConfigError(f"albums.summariser = {path!r} does not load as a causal LM with its tokenizer: "
                                  f"{type(err).__name__}: {str(err).splitlines()[0][:200]}") from err
        self.model.eval()
        self.name, self.max_new_tokens = str(path), max_new_tokens

    def prompt_ids(self, captions: list[str]) -> list[int]:
        text = SUMMARY_INSTRUCTION + "\n" + "\n".join(f"- {c}" for c in captions)
        if getattr(self.tokenizer, "chat_template", None):
            return list(self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=True,
                                                           add_generation_prompt=True, return_dict=False))
        return self.tokenizer.encode(text + "\nTitle:")

    def fitted_prompt(self, captions: list[str]) -> list[int]:
        """The prompt with as many of the captions as fit the model's context beside the new tokens."""
        config = self.model.config
        limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or 1 << 30
        room = limit - self.max_new_tokens
        for k in range(len(captions), 0, -1):
            ids = self.prompt_ids(captions[:k])
            if len(ids) <= room:
                return ids
        raise ConfigError(f"albums.summariser {self.name}: its context ({limit} tokens) holds no prompt with even one "
                          f"caption beside {self.max_new_tokens} new tokens; use a model with a longer context")

    @torch.no_grad()
    def __call__(self, captions: list[str]) -> str:
        prompt = torch.tensor([self.fitted_prompt(captions)])
        ids = self.model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=self.max_new_tokens,
                                  do_sample=False, pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        text = self.tokenizer.decode(ids[0, prompt.shape[1]:], skip_special_tokens=True)
        return text.strip().splitlines()[0].strip() if text.strip() else ""


def check_models(captioner: str | None, summariser: str | None, image_pipeline: str | None = None) -> None:
    """Fail before any work when a named captioner / summariser / image pipeline folder is not there."""
    if image_pipeline is not None:
        from ..diffusion.public_pipeline import check_pipeline_folder

        check_pipeline_folder(image_pipeline)
    if captioner is not None:
        _local_folder(captioner, "captioner")
    if summariser not in (None, "smollm2"):
        _local_folder(summariser, "summariser")


def describe_albums(albums: list[AlbumRecord], *, captioner: str | None, summariser: str | None,
                    max_new_tokens: int = 24) -> tuple[list[AlbumRecord], DescribeReport]:
    """Fill in missing captions (captioner) and then missing summaries (summariser, from the captions);
    given text is kept as it is.  Counts what was made."""
    import dataclasses

    report = DescribeReport(captioner=captioner, summariser=summariser)
    missing = [(i, j) for i, a in enumerate(albums) for j, p in enumerate(a.photos) if not p.caption]
    if missing and captioner is not None:
        made = Captioner(captioner, max_new_tokens=max_new_tokens)([albums[i].photos[j].image for i, j in missing])
        photos = {i: list(a.photos) for i, a in enumerate(albums)}
        for (i, j), caption in zip(missing, made, strict=True):
            photos[i][j] = dataclasses.replace(photos[i][j], caption=caption or None)
        albums = [dataclasses.replace(a, photos=photos[i]) for i, a in enumerate(albums)]
        report.captions_made = sum(bool(c) for c in made)
    todo = [i for i, a in enumerate(albums) if not a.summary]
    if todo and summariser is not None:
        model = Summariser(summariser, max_new_tokens=max_new_tokens)
        albums = list(albums)
        for i in todo:
            captions = [p.caption for p in albums[i].photos if p.caption]
            summary = model(captions) if captions else ""
            albums[i] = dataclasses.replace(albums[i], summary=summary or None)
            report.summaries_made += bool(summary)
    return albums, report
