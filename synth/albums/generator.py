"""AlbumGenerator: hierarchical DP albums -- a summary LM, a caption LM that writes each photo's
caption given its album's summary, a DP histogram of album lengths, and a caption-conditional
image model -- all trained at user level into ONE privacy ledger.

Privacy unit: the user.  Before training each user keeps at most ``max_albums_per_user`` albums
and each album at most ``max_photos_per_album`` photos (chosen at random, the rest counted);
then every row a user contributes to a stage (a summary per album; a caption per photo; an
image per photo) is a row of one unit, clipped together, so one user moves each stage's update
by at most C.  The stages are calibrated in turn so that the composed ε after stage i is
target ε times the shares so far: the run meets target ε with each stage's share on the card.
With ``images = public`` the image model is used as given (trained on public images only: no
privacy cost); ``none`` gives text-only albums for cheap curation before images.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from trainer import PrivacyLedger, TrainConfig
from trainer.errors import ConfigError
from trainer.io import atomic_directory, atomic_write_text
from trainer.seeds import numpy_rng

from ..conditioning import ConditioningDistribution, domain, dp_histogram
from ..diffusion import ImageGenerator, PublicTextToImage, UNetChoice
from ..domains import one_row_per_unit
from ..lm import ModelChoice
from ..lm.text_generator import TextGenerator
from ..lm.text_spec import TextSpec
from ..saved_meta import read_meta
from .describe import DescribeReport, describe_albums
from .folder import AlbumRecord
from .spec import AlbumsSpec

KIND = "dpsynth.AlbumGenerator"


@dataclass
class BoundReport:
    users: int
    albums_read: int
    albums_kept: int
    photos_read: int
    photos_kept: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def bound_albums(albums: list[AlbumRecord], spec: AlbumsSpec, seed: int | None) -> tuple[list[AlbumRecord], BoundReport]:
    """At most A albums per user and P photos per album, chosen at random (within each user's own data,
    so the choice does not depend on other users), and what was left out."""
    rng = numpy_rng(seed, "album_bounds")
    by_user: dict[str, list[AlbumRecord]] = defaultdict(list)
    for a in albums:
        by_user[a.user_id].append(a)
    kept = []
    for user in by_user:
        own = by_user[user]
        for i in sorted(rng.permutation(len(own))[: spec.max_albums_per_user]):
            a = own[int(i)]
            if len(a.photos) > spec.max_photos_per_album:
                pick = sorted(int(j) for j in rng.permutation(len(a.photos))[: spec.max_photos_per_album])
                a = dataclasses.replace(a, photos=[a.photos[j] for j in pick])
            kept.append(a)
    report = BoundReport(len(by_user), len(albums), len(kept), sum(len(a.photos) for a in albums),
                         sum(len(a.photos) for a in kept))
    return kept, report


def _missing_text(albums: list[AlbumRecord]) -> None:
    for a in albums:
        if not a.summary:
            raise ConfigError(f"album {a.album_id!r} has no summary: give one per album, or a public summariser "
                              "(albums.summariser: a local causal LM folder, or smollm2) to write it from the captions")
        for p in a.photos:
            if not p.caption:
                raise ConfigError(f"album {a.album_id!r}: photo {p.file.name} has no caption: give one, or a public "
                                  "captioner (albums.captioner: a local image-to-text model folder)")


class AlbumGenerator:
    def __init__(self, spec: AlbumsSpec | None = None, lm: ModelChoice | None = None, unet: UNetChoice | None = None,
                 *, _parts=None):
        self.spec = spec or AlbumsSpec()
        self.lm_choice = lm or ModelChoice()
        d = self.spec.description
        if _parts is not None:
            self.summary_lm, self.caption_lm, self.images = _parts
        else:
            self.summary_lm = TextGenerator(TextSpec(text="summary", privacy_unit="user", description=d,
                                                     chunk_tokens=256, overlap_tokens=0,
                                                     max_chunks_per_unit=self.spec.max_albums_per_user), self.lm_choice)
            self.caption_lm = TextGenerator(TextSpec(
                text="caption", context="summary" if self.spec.hierarchical else None, context_label="album summary",
                privacy_unit="user",
                description=f"{d} Write the caption of one of its photos.",
                chunk_tokens=256 + 192 * self.spec.earlier_captions, overlap_tokens=0,  # a cap: rows run as long as they are
                max_chunks_per_unit=self.spec.max_albums_per_user * self.spec.max_photos_per_album), self.lm_choice)
            self.images = None
            if self.spec.image_pipeline is not None:
                self.images = PublicTextToImage(self.spec.image_pipeline, image_size=(unet or UNetChoice()).image_size)
            elif self.spec.images != "none":
                unet = unet or UNetChoice(captions=True)
                if not unet.captions:
                    raise ConfigError("the album image model must be caption-conditional (model.captions = true)")
                self.images = ImageGenerator(unet)
        self.lengths: ConditioningDistribution | None = None
        self.ledger: PrivacyLedger | None = None
        self.bounds: BoundReport | None = None
        self.described: DescribeReport | None = None

    def fit(self, albums: list[AlbumRecord], config: TrainConfig, *, output_dir: str | Path | None = None,
            ledger: PrivacyLedger | None = None, image_steps: int | None = None) -> PrivacyLedger:
        """Train every stage at user level; ``config`` gives target ε (all stages together), batches, steps
        (``image_steps``: the image model's, default the same)."""
        spec = self.spec
        if config.target_epsilon is None and not config.non_private:
            raise ConfigError("album training splits one target_epsilon between its stages: give train.target_epsilon")
        albums, self.bounds = bound_albums(albums, spec, config.seed)
        albums, self.described = describe_albums(albums, captioner=spec.captioner, summariser=spec.summariser)
        _missing_text(albums)
        users = [a.user_id for a in albums]
        n_users = len(set(users))
        ledger = ledger or PrivacyLedger(delta=config.resolve_delta(n_users), accountant=config.accountant,
                                         privacy_unit="user")
        out = Path(output_dir) if output_dir else None
        # album lengths: one album per user counted, so a user moves one count (sensitivity 1)
        frame = pd.DataFrame({"photos": [len(a.photos) for a in albums], "album": [a.album_id for a in albums]})
        self.lengths = self._length_histogram(frame, users, config, out)
        ledger.record("album_length_histogram", noise_multiplier=spec.length_noise, sample_rate=1.0, steps=1)
        shares, spent = spec.shares, 0.0

        def stage_config(stage: str, k: int) -> TrainConfig:
            nonlocal spent
            spent += shares[stage]
            target = None if config.non_private else config.target_epsilon * min(1.0, spent)
            return dataclasses.replace(config, target_epsilon=target, delta=ledger.delta, privacy_unit="user",
                                       max_examples_per_user=k)

        summaries, captions = self.training_frames(albums)
        self.summary_lm.fit(summaries, stage_config("summary_lm", spec.max_albums_per_user), ledger=ledger,
                            stage="summary_lm", output_dir=out / "summary_lm" if out else None)
        k_photos = spec.max_albums_per_user * spec.max_photos_per_album
        self.caption_lm.fit(captions, stage_config("caption_lm", k_photos), ledger=ledger, stage="caption_lm",
                            output_dir=out / "caption_lm" if out else None)
        if spec.images == "dp":
            image_config = stage_config("unet", k_photos)
            if image_steps is not None:
                image_config = dataclasses.replace(image_config, steps=image_steps)
            self.images.fit([p.image for a in albums for p in a.photos], image_config,
                            labels=list(captions["caption"]), units=list(captions["user"]), ledger=ledger,
                            stage="unet", output_dir=out / "unet" if out else None)
        self.ledger = self.images.ledger if spec.images == "dp" else self.caption_lm.ledger
        return self.ledger

    def _length_histogram(self, frame: pd.DataFrame, users: list[str], config: TrainConfig,
                          out: Path | None) -> ConditioningDistribution:
        """The DP album-length histogram, kept beside the checkpoints: a resumed run reuses its draw instead
        of drawing (and having to account for) a second one."""
        saved = out / "album_lengths.json" if out else None
        if saved is not None and saved.is_file():
            kept = ConditioningDistribution.from_dict(json.loads(saved.read_text()))
            if kept.cells != domain(self.spec.length_spec()) or kept.noise_multiplier != self.spec.length_noise:
                raise ConfigError(f"{saved} was drawn for other album bounds or noise: resume with the same config, "
                                  "or start in a fresh output folder")
            return kept
        rows = one_row_per_unit(frame, users, numpy_rng(config.seed, "album_length_rows"))
        lengths = dp_histogram(rows, self.spec.length_spec(), self.spec.length_noise, seed=config.seed)
        if saved is not None:
            atomic_write_text(saved, json.dumps(lengths.to_dict(), indent=2))
        return lengths

    def caption_context(self, summary: str, earlier: list[str]) -> str:
        """What a caption is written given: the album's summary, and its last ``earlier_captions`` captions."""
        k = self.spec.earlier_captions
        if k == 0 or not earlier:
            return summary
        return f"{summary}\nearlier photos: " + " | ".join(earlier[-k:])

    def training_frames(self, albums: list[AlbumRecord]) -> tuple[pd.DataFrame, pd.DataFrame]:
        """What the two LMs train on (after the bounds): a summary per album and a caption per photo (with its
        album's summary as context, unless the baseline), each row carrying its user, the privacy unit."""
        summaries = pd.DataFrame({"summary": pd.array([a.summary for a in albums], dtype="string"),
                                  "user": [a.user_id for a in albums]})
        contexts = [self.caption_context(a.summary, [q.caption for q in a.photos[:j]])
                    for a in albums for j in range(len(a.photos))]
        captions = pd.DataFrame({"caption": pd.array([p.caption for a in albums for p in a.photos], dtype="string"),
                                 "summary": pd.array(contexts, dtype="string"),
                                 "user": [a.user_id for a in albums for p in a.photos]})
        if not self.spec.hierarchical:  # the baseline: captions learnt without their album's summary
            captions = captions.drop(columns=["summary"])
        return summaries, captions

    def sample(self, n: int, *, seed: int | None = None, max_new_tokens: int = 48, temperature: float = 1.0,
               batch_size: int = 16, image_steps: int = 25, guidance_scale: float = 3.0,
               progress: bool = False, lm_dtype: str = "fp32") -> list[dict]:
        """``n`` albums: a summary, a length from the DP histogram, that many captions given the summary,
        then (unless images = none) an image per caption.  ``lm_dtype``: the dtype the summary and caption
        LMs decode in (``generate.dtype``)."""
        rng = np.random.default_rng(seed)
        summaries, _ = self.summary_lm.sample(n, batch_size=batch_size, max_new_tokens=max_new_tokens,
                                              temperature=temperature, seed=seed, progress=progress, dtype=lm_dtype)
        lengths = [int(c[0]) for c in self.lengths.sample(n, rng)]
        if self.spec.earlier_captions > 0:
            albums = self._captions_in_order(list(summaries["summary"]), lengths, seed=seed, batch_size=batch_size,
                                             max_new_tokens=max_new_tokens, temperature=temperature, progress=progress,
                                             lm_dtype=lm_dtype)
            return self._draw_photos(albums, image_steps, guidance_scale, seed, progress)
        contexts = [s for s, k in zip(summaries["summary"], lengths, strict=True) for _ in range(k)]
        hierarchical = self.caption_lm.spec.context is not None
        captions, _ = self.caption_lm.sample(len(contexts), contexts=contexts if hierarchical else None,
                                             batch_size=batch_size, max_new_tokens=max_new_tokens,
                                             temperature=temperature, seed=seed, progress=progress, dtype=lm_dtype)
        it = iter(captions["caption"])  # in the contexts' order (independent captions: dealt in order)
        albums = [{"album_id": f"album{i:05d}", "summary": str(s), "captions": [next(it) for _ in range(k)]}
                  for i, (s, k) in enumerate(zip(summaries["summary"], lengths, strict=True))]
        return self._draw_photos(albums, image_steps, guidance_scale, seed, progress)

    def _captions_in_order(self, summaries: list[str], lengths: list[int], *, seed, batch_size, max_new_tokens,
                           temperature, progress, lm_dtype: str = "fp32") -> list[dict]:
        """Round j writes caption j of every album at least j + 1 long, given its summary and its earlier
        captions (one continuous batch a round)."""
        captions: list[list[str]] = [[] for _ in summaries]
        for j in range(max(lengths, default=0)):
            todo = [i for i, k in enumerate(lengths) if k > j]
            contexts = [self.caption_context(str(summaries[i]), captions[i]) for i in todo]
            frame, _ = self.caption_lm.sample(len(todo), contexts=contexts, batch_size=batch_size,
                                              max_new_tokens=max_new_tokens, temperature=temperature,
                                              seed=None if seed is None else seed + j, progress=progress,
                                              dtype=lm_dtype)
            for i, caption in zip(todo, frame["caption"], strict=True):
                captions[i].append(str(caption))
        return [{"album_id": f"album{i:05d}", "summary": str(s), "captions": captions[i]}
                for i, s in enumerate(summaries)]

    def _draw_photos(self, albums: list[dict], image_steps: int, guidance_scale: float, seed, progress) -> list[dict]:
        if self.images is not None:
            flat = [c for a in albums for c in a["captions"]]
            pictures = self.images.sample(len(flat), steps=image_steps, captions=flat, guidance_scale=guidance_scale,
                                          seed=seed, batch_size=64, progress=progress)
            it = iter(pictures)
            for a in albums:
                a["images"] = [next(it) for _ in a["captions"]]
        return albums

    def save_pretrained(self, directory: str | Path) -> None:
        with atomic_directory(directory) as tmp:
            self.summary_lm.save_pretrained(tmp / "summary_lm")
            self.caption_lm.save_pretrained(tmp / "caption_lm")
            if isinstance(self.images, ImageGenerator):
                self.images.save_pretrained(tmp / "image_model")
            meta = {"kind": KIND, "spec": dataclasses.asdict(self.spec),
                    "image_size": self.images.image_size if isinstance(self.images, PublicTextToImage) else None,
                    "bounds": self.bounds.to_dict() if self.bounds else None}
            (tmp / "dpsynth_config.json").write_text(json.dumps(meta, indent=2))
            if self.lengths is not None:
                (tmp / "album_lengths.json").write_text(json.dumps(self.lengths.to_dict(), indent=2))
            if self.ledger is not None:
                self.ledger.save(tmp / "privacy_ledger.json")

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "AlbumGenerator":
        directory = Path(directory)
        meta = read_meta(directory, KIND)
        if meta is None:
            raise FileNotFoundError(f"{directory} is not a saved dpsynth album generator")
        spec = AlbumsSpec(**meta["spec"])
        images = ImageGenerator.from_pretrained(directory / "image_model") if (directory / "image_model").is_dir() else None
        if spec.image_pipeline is not None:  # a public pipeline is referenced by its path, not copied
            images = PublicTextToImage(spec.image_pipeline, image_size=meta["image_size"])
        gen = cls(spec, _parts=(TextGenerator.from_pretrained(directory / "summary_lm"),
                                                      TextGenerator.from_pretrained(directory / "caption_lm"), images))
        gen.lengths = ConditioningDistribution.from_dict(json.loads((directory / "album_lengths.json").read_text()))
        if (directory / "privacy_ledger.json").exists():
            gen.ledger = PrivacyLedger.load(directory / "privacy_ledger.json")
        if meta.get("bounds"):
            gen.bounds = BoundReport(**meta["bounds"])
        return gen
