"""A public image fixture that needs no download: procedural scenes of emoji with captions.

Emoji come from Debian's ``fonts-noto-color-emoji`` (Noto Color Emoji, SIL OFL) and are named and
grouped by Debian's ``unicode-data`` (``emoji-test.txt``).  A scene is 1-3 emoji on a coloured
background ("on sand", "at night", ...) with a caption that names its objects and their rough places:
"a dog left of a palm tree on sand".  Everything is drawn from a seed, so a split is a seed, and no
image is ever committed.  The scenes are public data: they may pretrain a model, train the
evaluator's feature net, or stand in for a private set in a study (say which in the card).

``scripts/bootstrap.sh`` installs the two Debian packages when they are missing.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from trainer.errors import ConfigError
from trainer.io import atomic_directory

FONT_PATHS = ("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf",)
EMOJI_TEST_PATHS = ("/usr/share/unicode/emoji/emoji-test.txt",)
FONT_SIZE = 109  # the one size of Noto Color Emoji's bitmaps
INSTALL_HINT = "install Debian's fonts-noto-color-emoji and unicode-data (scripts/bootstrap.sh does, as root)"

# A default vocabulary of objects that stay distinct at 32 px (names as in emoji-test.txt).
DEFAULT_OBJECTS = ("dog", "cat", "palm tree", "red apple", "automobile", "house", "sun", "fish", "bird",
                   "tulip", "rocket", "snowman")
BACKGROUNDS = {"on sand": (226, 201, 148), "on grass": (112, 170, 86), "in the sky": (140, 190, 235),
               "on snow": (240, 243, 248), "at night": (30, 36, 70)}  # caption phrase -> colour


@dataclass(frozen=True)
class Emoji:
    text: str
    name: str
    group: str
    subgroup: str


def _first_existing(paths, what: str) -> Path:
    override = os.environ.get("DPSYNTH_EMOJI_FONT" if what == "font" else "DPSYNTH_EMOJI_TEST")
    for p in ([override] if override else []) + list(paths):
        if p and Path(p).is_file():
            return Path(p)
    raise ConfigError(f"the emoji fixture needs the {what} ({', '.join(paths)}): {INSTALL_HINT}")


def fixture_available() -> bool:
    try:
        _first_existing(FONT_PATHS, "font"), _first_existing(EMOJI_TEST_PATHS, "emoji list")
    except ConfigError:
        return False
    return True


@lru_cache(maxsize=2)
def emoji_catalogue(path: str | None = None) -> tuple[Emoji, ...]:
    """Every fully-qualified emoji of emoji-test.txt with its group and subgroup."""
    source = Path(path) if path else _first_existing(EMOJI_TEST_PATHS, "emoji list")
    group = subgroup = ""
    out = []
    line_re = re.compile(r"^([0-9A-F ]+?)\s*;\s*fully-qualified\s*#\s*\S+\s+E\d+\.\d+\s+(.+)$")
    for line in source.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif m := line_re.match(line):
            text = "".join(chr(int(cp, 16)) for cp in m.group(1).split())
            out.append(Emoji(text, m.group(2).strip(), group, subgroup))
    if not out:
        raise ConfigError(f"{source}: no fully-qualified emoji found; is it Unicode's emoji-test.txt?")
    return tuple(out)


def find_emoji(names: tuple[str, ...] | list[str]) -> list[Emoji]:
    by_name = {e.name: e for e in emoji_catalogue()}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ConfigError(f"not emoji names in emoji-test.txt: {missing} (e.g. {list(by_name)[:5]})")
    return [by_name[n] for n in names]


@lru_cache(maxsize=512)
def _glyph(text: str):
    """The emoji as an RGBA image cropped to its ink, at the font's native size."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(_first_existing(FONT_PATHS, "font")), FONT_SIZE)
    im = Image.new("RGBA", (FONT_SIZE * 2, FONT_SIZE * 2), (0, 0, 0, 0))
    ImageDraw.Draw(im).text((FONT_SIZE // 4, FONT_SIZE // 4), text, font=font, embedded_color=True)
    box = im.getbbox()
    if box is None:
        raise ConfigError(f"the emoji font draws nothing for {text!r}")
    return im.crop(box)


def _article(name: str) -> str:
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def _relation(a: tuple[float, float], b: tuple[float, float]) -> str:
    """Where a is relative to b, by the larger of the two offsets (image y grows downwards)."""
    dx, dy = a[0] - b[0], a[1] - b[1]
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


def _place(center: tuple[float, float], size: int) -> str:
    col = ("left", "middle", "right")[min(2, int(3 * center[0] / size))]
    row = ("top", "middle", "bottom")[min(2, int(3 * center[1] / size))]
    if col == row == "middle":
        return "in the middle"
    return f"at the {col}" if row == "middle" else f"at the {row}" if col == "middle" else f"at the {row} {col}"


def caption_for(objects: list[str], centers: list[tuple[float, float]], background: str, size: int) -> str:
    if len(objects) == 1:
        return f"{_article(objects[0])} {_place(centers[0], size)} {background}"
    if len(objects) == 2:
        return f"{_article(objects[0])} {_relation(centers[0], centers[1])} {_article(objects[1])} {background}"
    order = sorted(range(len(objects)), key=lambda i: centers[i][0])
    names = [_article(objects[i]) for i in order]
    return f"{', '.join(names[:-1])} and {names[-1]} from left to right {background}"


@dataclass
class Scene:
    image: "object"  # PIL.Image.Image, RGB
    caption: str
    objects: list[str]
    background: str


@dataclass
class EmojiScenes:
    """Draws scenes; ``objects`` are emoji names (default: 12 that stay distinct at 32 px)."""

    image_size: int = 32
    objects: tuple[str, ...] = DEFAULT_OBJECTS
    max_objects: int = 3
    backgrounds: dict[str, tuple[int, int, int]] = field(default_factory=lambda: dict(BACKGROUNDS))

    def __post_init__(self):
        if self.image_size < 16:
            raise ConfigError(f"emoji scenes need image_size >= 16, got {self.image_size}")
        if not 1 <= self.max_objects <= 3 or self.max_objects > len(self.objects):
            raise ConfigError(f"max_objects must be 1-3 and at most the {len(self.objects)} objects")
        self._emoji = find_emoji(list(self.objects))

    def draw(self, rng: np.random.Generator) -> Scene:
        from PIL import Image

        s = self.image_size
        k = int(rng.integers(1, self.max_objects + 1))
        picks = [int(i) for i in rng.choice(len(self._emoji), size=k, replace=False)]
        background = list(self.backgrounds)[int(rng.integers(len(self.backgrounds)))]
        base = np.asarray(self.backgrounds[background], np.float32)
        shade = np.linspace(-12, 12, s, dtype=np.float32)[:, None, None] * rng.uniform(-1, 1)
        pixels = np.clip(base + shade + rng.normal(0, 4, (s, s, 3)), 0, 255).astype(np.uint8)
        canvas = Image.fromarray(np.broadcast_to(pixels, (s, s, 3)).copy(), "RGB")
        side = int(round(s * {1: 0.55, 2: 0.42, 3: 0.36}[k] * rng.uniform(0.85, 1.1)))
        centers: list[tuple[float, float]] = []
        for _ in range(200):  # rejection: objects may touch, not cover one another
            centers = [(float(rng.uniform(side / 2, s - side / 2)), float(rng.uniform(side / 2, s - side / 2)))
                       for _ in range(k)]
            if all(max(abs(a[0] - b[0]), abs(a[1] - b[1])) >= 0.8 * side
                   for i, a in enumerate(centers) for b in centers[i + 1:]):
                break
        for idx, (cx, cy) in zip(picks, centers, strict=True):
            glyph = _glyph(self._emoji[idx].text)
            scale = side / max(glyph.size)
            g = glyph.resize((max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))),
                             Image.Resampling.LANCZOS)
            canvas.paste(g, (round(cx - g.width / 2), round(cy - g.height / 2)), g)
        names = [self._emoji[i].name for i in picks]
        return Scene(canvas, caption_for(names, centers, background, s), names, background)

    def scenes(self, n: int, seed: int) -> list[Scene]:
        rng = np.random.default_rng(seed)
        return [self.draw(rng) for _ in range(n)]


def write_emoji_imagefolder(folder: str | Path, n: int, *, seed: int, scenes: EmojiScenes | None = None,
                            overwrite: bool = False) -> Path:
    """An imagefolder (Hugging Face layout): ``images/NNNNNN.png`` + ``metadata.jsonl`` with
    ``file_name``, ``text`` (the caption), ``objects`` and ``background``; written atomically."""
    scenes = scenes or EmojiScenes()
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder} exists; remove it or pass overwrite=True")
    with atomic_directory(folder) as tmp:
        (tmp / "images").mkdir()
        lines = []
        for i, sc in enumerate(scenes.scenes(n, seed)):
            name = f"images/{i:06d}.png"
            sc.image.save(tmp / name)
            lines.append(json.dumps({"file_name": name, "text": sc.caption, "objects": sc.objects,
                                     "background": sc.background}))
        (tmp / "metadata.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(
            f"Public fixture: {n} procedural emoji scenes ({scenes.image_size} px, seed {seed}), drawn with Noto "
            "Color Emoji (SIL Open Font License) and named by Unicode's emoji-test.txt.\n", encoding="utf-8")
    return folder
