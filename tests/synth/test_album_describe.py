"""Albums without text: a public captioner and summariser, loaded by local path (tiny saved models here),
write the missing captions and summaries; what they wrote is counted and is what the DP LMs train on."""

from __future__ import annotations

import json

import pytest
import torch

from tests.emoji import require_emoji_fixture
from trainer import TrainConfig
from trainer.errors import ConfigError


def _constant_lm_head(model, token: int) -> None:
    """Make a random GPT-2 decoder say ``token`` at every position (final LayerNorm -> ones)."""
    with torch.no_grad():
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.fill_(1.0)
        model.lm_head.weight.zero_()
        model.lm_head.weight[token] = 1.0


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    from synth.lm.models import load_smollm2_tokenizer

    root = tmp_path_factory.mktemp("describers")
    tok = load_smollm2_tokenizer()
    dog, beach = tok.encode(" dog")[0], tok.encode(" beach")[0]
    decoder = dict(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, n_positions=128, tie_word_embeddings=False,
                   bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    cfg = VisionEncoderDecoderConfig.from_encoder_decoder_configs(
        ViTConfig(image_size=16, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                  intermediate_size=64), GPT2Config(**decoder, add_cross_attention=True, is_decoder=True))
    cfg.decoder_start_token_id, cfg.pad_token_id, cfg.eos_token_id = tok.eos_token_id, tok.eos_token_id, tok.eos_token_id
    captioner = VisionEncoderDecoderModel(config=cfg)
    _constant_lm_head(captioner.decoder, dog)
    captioner.save_pretrained(root / "captioner")
    ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(root / "captioner")
    tok.save_pretrained(root / "captioner")
    summariser = GPT2LMHeadModel(GPT2Config(**decoder))
    _constant_lm_head(summariser, beach)
    summariser.save_pretrained(root / "summariser")
    tok.save_pretrained(root / "summariser")
    return root, tok.decode([dog] * 4).strip(), tok.decode([beach] * 4).strip()


def _albums_without_text(tmp_path):
    require_emoji_fixture()
    from evaluation.fixtures.albums import EmojiAlbums, write_album_folder
    from synth.albums import load_album_folder

    folder = write_album_folder(tmp_path / "albums", EmojiAlbums(image_size=16).albums(6, seed=4, users=6))
    lines = [json.loads(line) for line in (folder / "albums.jsonl").read_text().splitlines()]
    lines[0]["photos"] = [{"file": p["file"]} for p in lines[0]["photos"]]  # album 0: photos only
    del lines[1]["summary"]  # album 1: captions but no summary
    del lines[2]["summary"]
    lines[2]["photos"] = [{"file": p["file"]} for p in lines[2]["photos"]]  # album 2: neither
    (folder / "albums.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return load_album_folder(folder, size=16), lines


def test_missing_captions_and_summaries_are_written_by_the_named_public_models(tmp_path, models):
    from synth.albums.describe import describe_albums

    root, dogs, beaches = models
    albums, lines = _albums_without_text(tmp_path)
    out, report = describe_albums(albums, captioner=str(root / "captioner"), summariser=str(root / "summariser"),
                                  max_new_tokens=4)
    assert [p.caption for p in out[0].photos] == [dogs] * len(lines[0]["photos"])
    assert [p.caption for p in out[1].photos] == [p["caption"] for p in lines[1]["photos"]]  # given text is kept
    assert out[1].summary == beaches == out[2].summary and out[3].summary == lines[3]["summary"]
    assert report.captions_made == len(lines[0]["photos"]) + len(lines[2]["photos"]) and report.summaries_made == 2
    assert [p.caption for p in albums[0].photos] == [None] * len(lines[0]["photos"])  # the input is not mutated


def test_album_training_describes_first_and_refuses_without_a_describer(tmp_path, models):
    from synth.albums import AlbumGenerator, AlbumsSpec
    from synth.albums.describe import check_models
    from synth.lm import ModelChoice

    root, dogs, _ = models
    albums, _ = _albums_without_text(tmp_path)
    cfg = TrainConfig(target_epsilon=4.0, delta=1e-3, expected_batch_size=3, physical_batch_size=8, steps=1,
                      progress=False)
    with pytest.raises(ConfigError, match=r"photo \d+\.png has no caption: give one, or a public captioner"):
        AlbumGenerator(AlbumsSpec(max_albums_per_user=1, max_photos_per_album=4, images="none"),
                       ModelChoice(model="scratch")).fit(albums, cfg)
    spec = AlbumsSpec(max_albums_per_user=1, max_photos_per_album=4, images="none", captioner=str(root / "captioner"),
                      summariser=str(root / "summariser"))
    gen = AlbumGenerator(spec, ModelChoice(model="scratch"))
    gen.fit(albums, cfg)
    assert gen.described.captions_made == 8 and gen.described.summaries_made == 2  # 4 kept photos each
    with pytest.raises(ConfigError, match="not a local model folder with a config.json"):
        check_models(str(tmp_path / "nowhere"), None)


def _tiny_text_to_image_pipeline(folder):
    """A random Stable Diffusion pipeline small enough for a test (SmolLM2's tokenizer, 16 px)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from synth.lm.models import load_smollm2_tokenizer

    tok = load_smollm2_tokenizer()
    tok.model_max_length = 16
    tok.pad_token = tok.pad_token or tok.eos_token
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32),
                                layers_per_block=1, cross_attention_dim=16, norm_num_groups=8, attention_head_dim=4,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    vae = AutoencoderKL(block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=8,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, max_position_embeddings=16, eos_token_id=tok.eos_token_id,
                                        pad_token_id=tok.pad_token_id, bos_token_id=tok.eos_token_id))
    StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet,
                            scheduler=DDIMScheduler(num_train_timesteps=50, clip_sample=False), safety_checker=None,
                            feature_extractor=None, requires_safety_checker=False).save_pretrained(folder)
    return folder


def test_photos_from_a_public_text_to_image_pipeline_by_path_cost_no_privacy(tmp_path):
    from synth.albums import AlbumGenerator, AlbumsSpec
    from synth.albums.pipeline import _public_facts
    from synth.diffusion import UNetChoice
    from synth.lm import ModelChoice
    from synth.run_config import build_config

    pipe = _tiny_text_to_image_pipeline(tmp_path / "sd")
    albums, _ = _albums_without_text(tmp_path)
    albums = [a for a in albums if a.summary and all(p.caption for p in a.photos)]
    with pytest.raises(ConfigError, match="goes with images = \"public\""):
        AlbumsSpec(images="dp", image_pipeline=str(pipe))
    spec = AlbumsSpec(max_albums_per_user=1, max_photos_per_album=4, images="public", image_pipeline=str(pipe))
    gen = AlbumGenerator(spec, ModelChoice(model="scratch"), UNetChoice(image_size=16, captions=True))
    ledger = gen.fit(albums, TrainConfig(target_epsilon=4.0, delta=1e-3, expected_batch_size=2, physical_batch_size=8,
                                         steps=1, progress=False))
    assert [e.stage for e in ledger.events] == ["album_length_histogram", "summary_lm", "caption_lm"]  # no photo stage
    out = gen.sample(2, seed=0, max_new_tokens=6, image_steps=2)
    photos = [torch.stack(a["images"]) for a in out]
    assert all(p.shape == (len(a["captions"]), 3, 16, 16) for p, a in zip(photos, out, strict=True))
    assert all(-1 <= p.min() and p.max() <= 1 and p.std() > 0 for p in photos)
    gen.save_pretrained(tmp_path / "gen")
    assert not (tmp_path / "gen" / "image_model").exists()  # referenced by path, not copied
    again = AlbumGenerator.from_pretrained(tmp_path / "gen").sample(2, seed=0, max_new_tokens=6, image_steps=2)
    assert all(torch.equal(torch.stack(x["images"]), torch.stack(y["images"])) for x, y in zip(out, again, strict=True))
    config = build_config({"data": {"path": "albums"}, "albums": {"images": "public", "image_pipeline": str(pipe)}})
    assert any("public text-to-image pipeline" in f for f in _public_facts(config, None))
