"""The image generator: an imagefolder, DP training of a small UNet with its ledger, DDIM sampling,
diffusers-layout save / reload."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from synth.images import ImageGenerator, UNetChoice, load_image_folder  # noqa: E402
from trainer import PrivacyLedger, TrainConfig  # noqa: E402
from trainer.errors import ConfigError, DPSynthError  # noqa: E402

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220)}


def _folder(tmp_path, n=12):
    from PIL import Image

    rng = np.random.default_rng(0)
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name, rgb in COLOURS.items():
        (tmp_path / name).mkdir()
        for i in range(n):
            arr = np.full((20, 20, 3), 240, np.uint8)
            x, y = rng.integers(0, 10, 2)
            arr[y:y + 10, x:x + 10] = rgb  # a coloured square somewhere on a light background
            Image.fromarray(arr).save(tmp_path / name / f"{i}.png")
    return tmp_path


def test_imagefolder_classes_and_errors(tmp_path):
    images, labels = load_image_folder(_folder(tmp_path), size=16)
    assert len(images) == 24 and images[0].shape == (3, 16, 16) and labels.count("red") == 12
    assert -1.0 <= float(torch.stack(images).min()) and float(torch.stack(images).max()) <= 1.0
    (tmp_path / "loose.png").write_bytes((tmp_path / "red" / "0.png").read_bytes())
    with pytest.raises(DPSynthError, match="some images sit in sub-folders"):
        load_image_folder(tmp_path, size=16)
    (tmp_path / "loose.png").unlink()
    (tmp_path / "red" / "bad.png").write_text("not an image")
    with pytest.raises(DPSynthError, match=r"bad\.png: not a readable image"):
        load_image_folder(tmp_path, size=16)


def test_class_conditional_dp_training_sampling_and_reload(tmp_path):
    images, labels = load_image_folder(_folder(tmp_path / "data"), size=16)
    torch.manual_seed(0)
    gen = ImageGenerator(UNetChoice(model="tiny", image_size=16, classes=["red", "blue"], multiplicity=2,
                                    train_timesteps=100))
    ledger = PrivacyLedger(delta=1e-3)
    ledger.record("caption_lm", noise_multiplier=2.0, sample_rate=0.1, steps=10)  # an earlier DP stage
    cfg = TrainConfig(target_epsilon=8.0, delta=1e-3, expected_batch_size=8, physical_batch_size=8, steps=2,
                      progress=False)
    result = gen.fit(images, cfg, labels=labels, ledger=ledger, output_dir=tmp_path / "ckpt")
    assert [e.stage for e in gen.ledger.events] == ["caption_lm", "unet"] and result.epsilon <= 8.0
    out = gen.sample(4, steps=5, classes=["red", "blue", "red", "blue"], seed=3)
    assert out.shape == (4, 3, 16, 16) and torch.isfinite(out).all() and out.abs().max() <= 1.0
    gen.save_pretrained(tmp_path / "gen")
    assert (tmp_path / "gen" / "unet" / "config.json").is_file() and (tmp_path / "gen" / "scheduler").is_dir()
    again = ImageGenerator.from_pretrained(tmp_path / "gen")
    assert again.ledger.to_dict() == gen.ledger.to_dict()
    assert torch.allclose(again.sample(4, steps=5, classes=["red", "blue", "red", "blue"], seed=3), out, atol=1e-5)
    with pytest.raises(ConfigError, match="exactly when the model is class-conditional"):
        gen.sample(2, steps=2)
    with pytest.raises(ConfigError, match="class 'green' is not among"):
        gen.examples(images[:1], ["green"])
