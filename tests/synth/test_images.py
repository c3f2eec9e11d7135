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
    loaded = load_image_folder(_folder(tmp_path), size=16)
    images, labels = loaded.images, loaded.classes
    assert loaded.metadata is None and len(images) == 24 and images[0].shape == (3, 16, 16) and labels.count("red") == 12
    assert -1.0 <= float(torch.stack(images).min()) and float(torch.stack(images).max()) <= 1.0
    (tmp_path / "loose.png").write_bytes((tmp_path / "red" / "0.png").read_bytes())
    with pytest.raises(DPSynthError, match="some images sit in sub-folders"):
        load_image_folder(tmp_path, size=16)
    (tmp_path / "loose.png").unlink()
    (tmp_path / "red" / "bad.png").write_text("not an image")
    with pytest.raises(DPSynthError, match=r"bad\.png: not a readable image"):
        load_image_folder(tmp_path, size=16)


def test_class_conditional_dp_training_sampling_and_reload(tmp_path):
    loaded = load_image_folder(_folder(tmp_path / "data"), size=16)
    images, labels = loaded.images, loaded.classes
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


def _scenes(n, seed=0, size=16):
    from evaluation.fixtures.emoji import EmojiScenes
    from tests.emoji import require_emoji_fixture

    require_emoji_fixture()
    scenes = EmojiScenes(image_size=size, objects=("dog", "cat", "sun", "fish"), max_objects=2).scenes(n, seed)
    images = [torch.from_numpy(np.asarray(s.image, np.float32) / 127.5 - 1).permute(2, 0, 1).contiguous()
              for s in scenes]
    return images, [s.caption for s in scenes]


def test_caption_conditional_training_guided_sampling_and_reload(tmp_path):
    images, captions = _scenes(16)
    torch.manual_seed(0)
    gen = ImageGenerator(UNetChoice(model="tiny", image_size=16, captions=True, caption_tokens=12,
                                    train_timesteps=100))
    assert type(gen.unet).__name__ == "UNet2DConditionModel" and "all-MiniLM-L6-v2" in gen.description
    cfg = TrainConfig(target_epsilon=8.0, delta=1e-3, expected_batch_size=8, physical_batch_size=4, steps=2,
                      progress=False)
    before = {n: p.detach().clone() for n, p in gen.unet.named_parameters()}
    gen.fit(images, cfg, labels=captions, output_dir=tmp_path / "ckpt")
    cross = [n for n in before if "attn2.to_k" in n]  # the cross-attention on captions trains
    assert cross and all(not torch.equal(before[n], dict(gen.unet.named_parameters())[n]) for n in cross)
    prompts = ["a dog on sand", "a cat at night"]
    out = gen.sample(2, steps=4, captions=prompts, guidance_scale=3.0, seed=1)
    assert out.shape == (2, 3, 16, 16) and torch.isfinite(out).all()
    unguided = gen.sample(2, steps=4, captions=prompts, guidance_scale=1.0, seed=1)
    assert not torch.allclose(out, unguided)  # guidance changes the images
    gen.save_pretrained(tmp_path / "gen")
    again = ImageGenerator.from_pretrained(tmp_path / "gen")
    assert torch.allclose(again.sample(2, steps=4, captions=prompts, seed=1), out, atol=1e-5)
    assert again.description == gen.description
    with pytest.raises(ConfigError, match="exactly when the model is caption-conditional"):
        gen.sample(2, steps=2)
    with pytest.raises(ConfigError, match="2 images asked for but 1"):
        gen.sample(2, steps=2, captions=["a dog"])


def test_lora_fine_tuning_of_a_pretrained_unet_changes_only_attention(tmp_path):
    images, captions = _scenes(8, seed=1)
    torch.manual_seed(0)
    public = ImageGenerator(UNetChoice(model="tiny", image_size=16, captions=True, caption_tokens=12,
                                       train_timesteps=100))
    public.unet.save_pretrained(tmp_path / "public_unet")  # stands in for a UNet pretrained on public images
    choice = UNetChoice(model=str(tmp_path / "public_unet"), image_size=16, captions=True, caption_tokens=12,
                        train_timesteps=100, finetune="lora", lora_rank=4)
    gen = ImageGenerator(choice)
    before = {n: p.detach().clone() for n, p in gen.unet.named_parameters()}
    cfg = TrainConfig(target_epsilon=8.0, delta=1e-3, expected_batch_size=8, physical_batch_size=8, steps=2,
                      progress=False, learning_rate=1e-2)
    gen.fit(images, cfg, labels=captions)
    after = dict(gen.unet.named_parameters())
    assert set(after) == set(before)  # merged: a plain UNet again
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and all(n.rsplit(".", 2)[-2] in ("to_q", "to_k", "to_v") or ".to_out.0." in n for n in changed)
    assert "LoRA r=4" in gen.description
    with pytest.raises(ConfigError, match="lora needs a pretrained UNet folder"):
        UNetChoice(model="tiny", finetune="lora")
    with pytest.raises(ConfigError, match="set model.captions = true"):
        ImageGenerator(UNetChoice(model=str(tmp_path / "public_unet"), image_size=16))


def test_grayscale_control_scikit_learn_digits_class_conditional(tmp_path):
    """The grayscale control: scikit-learn's bundled 8x8 digits (public), written as an imagefolder of
    class folders, 1 channel at 16 px."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i in range(40):
        folder = tmp_path / "digits" / str(digits.target[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8), "L").save(folder / f"{i}.png")
    loaded = load_image_folder(tmp_path / "digits", size=16, channels=1)
    assert loaded.images[0].shape == (1, 16, 16) and sorted(set(loaded.classes)) == [str(d) for d in range(10)]
    gen = ImageGenerator(UNetChoice(model="tiny", image_size=16, channels=1, classes=[str(d) for d in range(10)],
                                    train_timesteps=50))
    cfg = TrainConfig(target_epsilon=8.0, delta=1e-3, expected_batch_size=8, physical_batch_size=8, steps=2,
                      progress=False)
    gen.fit(loaded.images, cfg, labels=loaded.classes)
    out = gen.sample(3, steps=3, classes=["0", "7", "9"], seed=0)
    assert out.shape == (3, 1, 16, 16) and torch.isfinite(out).all()
