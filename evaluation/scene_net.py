"""The evaluator's image network: a small CNN that names the objects of a scene,
trained non-privately on PUBLIC fixture renders only (never on a private split).

Its penultimate layer is the feature space of the fixture-FID and of image precision / recall
(no Inception weights exist offline); its object head finds a caption's objects in an image
(caption consistency); the same architecture, trained from scratch on synthetic images, gives
the downstream-utility figure.  Trained once per (fixture settings, seed) and cached as
safetensors, so every evaluation of one study uses the same network.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .fixtures.emoji import DEFAULT_OBJECTS, EmojiScenes


class SceneNet(nn.Module):
    """Conv blocks -> global average -> a ``feature_dim`` embedding -> object logits.  (A background
    head beside it, tried in session 5, stalled the object head at the prior: left out.)"""

    def __init__(self, n_objects: int, channels: int = 3, feature_dim: int = 128):
        super().__init__()

        def block(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.GroupNorm(8, o), nn.SiLU(),
                                 nn.Conv2d(o, o, 3, padding=1), nn.GroupNorm(8, o), nn.SiLU(), nn.MaxPool2d(2))

        self.body = nn.Sequential(block(channels, 32), block(32, 64), block(64, 128),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, feature_dim), nn.SiLU())
        self.objects = nn.Linear(feature_dim, n_objects)

    def forward(self, x):
        f = self.body(x)
        return f, self.objects(f)


def to_tensor(images) -> torch.Tensor:
    """PIL images, (C, H, W) tensors or an (N, C, H, W) tensor in [-1, 1] -> an (N, C, H, W) float tensor."""
    if isinstance(images, torch.Tensor):
        return images.float()
    if len(images) and isinstance(images[0], torch.Tensor):
        return torch.stack(list(images)).float()
    arr = np.stack([np.asarray(im.convert("RGB"), np.float32) for im in images]) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def fit_scene_net(images: torch.Tensor, object_targets: torch.Tensor, *, epochs: int, seed: int,
                  batch_size: int = 64, lr: float = 1e-3) -> SceneNet:
    """Plain (non-private) supervised training; ``object_targets`` is multi-hot (N, objects)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = SceneNet(object_targets.shape[1], channels=images.shape[1])
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=g)
        for start in range(0, len(images), batch_size):
            idx = order[start:start + batch_size]
            x = images[idx]
            if torch.rand((), generator=g) < 0.5:  # mirror (captions say left/right, but objects stay objects)
                x = x.flip(3)
            loss = nn.functional.binary_cross_entropy_with_logits(net(x)[1], object_targets[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def objects_in_caption(caption: str, objects: tuple[str, ...]) -> list[str]:
    """Vocabulary objects a caption names (whole words; longest names first so 'palm tree' is not 'tree')."""
    found, text = [], caption.lower()
    for name in sorted(objects, key=len, reverse=True):
        pattern = rf"(?<![\w-]){re.escape(name.lower())}(?![\w-])"
        if re.search(pattern, text):
            found.append(name)
            text = re.sub(pattern, " ", text)
    return [o for o in objects if o in found]


def multi_hot(lists: list[list[str]], objects: tuple[str, ...]) -> torch.Tensor:
    out = torch.zeros(len(lists), len(objects))
    for i, names in enumerate(lists):
        for n in names:
            out[i, objects.index(n)] = 1.0
    return out


@dataclass(frozen=True)
class FeatureNetSpec:
    image_size: int = 32
    objects: tuple[str, ...] = DEFAULT_OBJECTS
    n_train: int = 6000
    epochs: int = 5
    seed: int = 7_000_001  # the public render stream the network learns from
    backgrounds: str = "scenes"  # scenes (the emoji scenes' palette) or albums (the album themes' palettes)

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


class SceneFeatures:
    """The trained public network: ``features(images)``, ``object_probabilities(images)``."""

    def __init__(self, net: SceneNet, spec: FeatureNetSpec):
        self.net, self.spec = net.eval(), spec

    @classmethod
    def trained_on_fixture(cls, spec: FeatureNetSpec | None = None, *, cache_dir: str | Path | None = None
                           ) -> "SceneFeatures":
        from safetensors.torch import load_file, save_file

        spec = spec or FeatureNetSpec()
        cache = Path(cache_dir or os.environ.get("DPSYNTH_CACHE", Path.home() / ".cache" / "dpsynth"))
        path = cache / f"scene_net-{spec.key()}.safetensors"
        net = SceneNet(len(spec.objects))
        if path.is_file():
            net.load_state_dict(load_file(path))
            return cls(net, spec)
        backgrounds = None
        if spec.backgrounds == "albums":
            from .fixtures.albums import THEMES

            backgrounds = {k: v for t in THEMES.values() for k, v in t["backgrounds"].items()}
        maker = EmojiScenes(image_size=spec.image_size, objects=spec.objects,
                            **({"backgrounds": backgrounds} if backgrounds else {}))
        scenes = maker.scenes(spec.n_train, spec.seed)
        images = to_tensor([s.image for s in scenes])
        net = fit_scene_net(images, multi_hot([s.objects for s in scenes], spec.objects), epochs=spec.epochs,
                            seed=spec.seed)
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp))
        os.replace(tmp, path)
        return cls(net, spec)

    @torch.no_grad()
    def _run(self, images, batch_size: int = 256):
        x = to_tensor(images)
        outs = [self.net(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        return tuple(torch.cat([o[j] for o in outs]) for j in range(2))

    def features(self, images) -> np.ndarray:
        return self._run(images)[0].numpy().astype(np.float64)

    def object_probabilities(self, images) -> np.ndarray:
        return torch.sigmoid(self._run(images)[1]).numpy()

    def caption_objects_found(self, images, captions: list[str]) -> tuple[int, int]:
        """(objects found, objects named): of the objects each caption names, how many the network
        finds in its image (probability > 0.5)."""
        objects = self.spec.objects
        named = [objects_in_caption(c, objects) for c in captions]
        if not any(named):
            return 0, 0
        probs = self.object_probabilities(images)
        found = sum(int(probs[i, objects.index(o)] > 0.5) for i, names in enumerate(named) for o in names)
        return found, sum(len(n) for n in named)
