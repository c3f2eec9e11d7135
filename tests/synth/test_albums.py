"""Hierarchical albums: bounds per level, four DP stages at user level composed in one ledger that
meets the target, summary-first sampling, save / reload."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch

from tests.emoji import require_emoji_fixture
from trainer import TrainConfig
from trainer.errors import ConfigError

pytest.importorskip("diffusers")


def _albums(tmp_path, n=10, seed=4):
    require_emoji_fixture()
    from evaluation.fixtures.albums import EmojiAlbums, write_album_folder
    from synth.albums import load_album_folder

    folder = write_album_folder(tmp_path / "albums", EmojiAlbums(image_size=16).albums(n, seed=seed, users=6))
    return load_album_folder(folder, size=16)


def test_bounds_per_level_are_applied_within_each_user_and_counted(tmp_path):
    from synth.albums import AlbumsSpec, bound_albums

    albums = _albums(tmp_path)
    kept, report = bound_albums(albums, AlbumsSpec(max_albums_per_user=1, max_photos_per_album=3), seed=0)
    assert report.users == 6 and report.albums_read == 10 and report.albums_kept == 6 == len(kept)
    assert len({a.user_id for a in kept}) == 6 and all(len(a.photos) <= 3 for a in kept)
    assert report.photos_kept == sum(len(a.photos) for a in kept) < report.photos_read
    with pytest.raises(ConfigError, match="leaves nothing for the DP image stage"):
        AlbumsSpec(summary_share=0.5, caption_share=0.5)


def test_album_stages_compose_in_one_ledger_that_meets_the_target(tmp_path):
    from synth.albums import AlbumGenerator, AlbumsSpec
    from synth.images import UNetChoice
    from synth.lm import ModelChoice

    albums = _albums(tmp_path)
    torch.manual_seed(0)
    spec = AlbumsSpec(max_albums_per_user=1, max_photos_per_album=4)
    gen = AlbumGenerator(spec, ModelChoice(model="scratch"),
                         UNetChoice(model="tiny", image_size=16, captions=True, caption_tokens=12, train_timesteps=50))
    cfg = TrainConfig(target_epsilon=8.0, delta=1e-3, expected_batch_size=3, physical_batch_size=8, steps=2,
                      progress=False)
    ledger = gen.fit(albums, cfg)
    assert [e.stage for e in ledger.events] == ["album_length_histogram", "summary_lm", "caption_lm", "unet"]
    assert ledger.privacy_unit == "user" and all(e.sample_rate == 3 / 6 for e in ledger.events[1:])
    assert 7.5 < ledger.epsilon() <= 8.0
    from trainer.accounting import epsilon

    after_summary = epsilon(ledger.history[:2], delta=ledger.accountant_delta, accountant=ledger.accountant)
    assert after_summary <= 8.0 * spec.summary_share + 1e-6  # each stage within its cumulative share
    out = gen.sample(2, seed=1, max_new_tokens=8, image_steps=2)
    assert len(out) == 2 and all(1 <= len(a["captions"]) <= 4 == spec.max_photos_per_album for a in out)
    assert all(len(a["images"]) == len(a["captions"]) and a["images"][0].shape == (3, 16, 16) for a in out)
    gen.save_pretrained(tmp_path / "gen")
    again = AlbumGenerator.from_pretrained(tmp_path / "gen")
    assert again.ledger.to_dict() == ledger.to_dict() and again.lengths.to_dict() == gen.lengths.to_dict()
    assert again.bounds == gen.bounds


def test_the_independent_baseline_learns_captions_without_the_summary(tmp_path):
    from synth.albums import AlbumGenerator, AlbumsSpec
    from synth.lm import ModelChoice

    albums = _albums(tmp_path)
    torch.manual_seed(0)
    gen = AlbumGenerator(AlbumsSpec(max_albums_per_user=1, max_photos_per_album=4, images="none", hierarchical=False),
                         ModelChoice(model="scratch"))
    assert gen.caption_lm.spec.context is None and gen.images is None
    cfg = TrainConfig(target_epsilon=4.0, delta=1e-3, expected_batch_size=3, physical_batch_size=8, steps=1,
                      progress=False)
    ledger = gen.fit(albums, cfg)
    assert [e.stage for e in ledger.events] == ["album_length_histogram", "summary_lm", "caption_lm"]
    assert 3.8 < ledger.epsilon() <= 4.0  # without DP photos the captions take the rest of the budget
    out = gen.sample(3, seed=0, max_new_tokens=6)
    assert all(len(a["captions"]) >= 1 and "images" not in a for a in out)


def test_captions_given_the_albums_earlier_captions_are_trained_and_sampled_in_order(tmp_path):
    from synth.albums import AlbumGenerator, AlbumsSpec
    from synth.lm import ModelChoice

    albums = _albums(tmp_path)
    with pytest.raises(ConfigError, match="only with hierarchical = true"):
        AlbumsSpec(earlier_captions=2, hierarchical=False)
    torch.manual_seed(0)
    gen = AlbumGenerator(AlbumsSpec(max_albums_per_user=1, max_photos_per_album=4, images="none", earlier_captions=2),
                         ModelChoice(model="scratch"))
    _, captions = gen.training_frames(albums[:1])
    photos = [p.caption for p in albums[0].photos]
    assert list(captions["summary"]) == [albums[0].summary] + [
        f"{albums[0].summary}\nearlier photos: " + " | ".join(photos[max(0, j - 2):j]) for j in range(1, len(photos))]
    gen.fit(albums, TrainConfig(target_epsilon=4.0, delta=1e-3, expected_batch_size=3, physical_batch_size=8, steps=1,
                                progress=False))
    seen = []
    sample = gen.caption_lm.sample

    def spy(n, *, contexts, **kw):
        seen.append(contexts)
        return sample(n, contexts=contexts, **kw)

    gen.caption_lm.sample = spy
    out = gen.sample(3, seed=0, max_new_tokens=6)
    assert len(seen) == max(len(a["captions"]) for a in out)  # one round per position
    for j, contexts in enumerate(seen[1:], start=1):  # round j sees what rounds < j wrote
        albums_j = [a for a in out if len(a["captions"]) > j]
        assert contexts == [gen.caption_context(a["summary"], a["captions"][:j]) for a in albums_j]


def test_an_interrupted_album_run_resumes_each_stage_and_keeps_its_length_draw(tmp_path, monkeypatch):
    """The caption stage fails half-way (after its first checkpoint); a fresh generator with the same config
    and run folder finishes: the summary LM is not retrained, the DP length histogram is the first run's
    draw (not a second one), and every stage is in the ledger once."""
    from synth.albums import AlbumGenerator, AlbumsSpec
    from synth.lm import ModelChoice

    albums = _albums(tmp_path)
    spec = AlbumsSpec(max_albums_per_user=1, max_photos_per_album=4, images="none")
    cfg = TrainConfig(target_epsilon=6.0, delta=1e-3, expected_batch_size=3, physical_batch_size=8, steps=2,
                      checkpoint_every=1, progress=False)
    from trainer.loop import DPTrainer

    first = AlbumGenerator(spec, ModelChoice(model="scratch"))
    save = DPTrainer.save

    def save_then_die(trainer):
        path = save(trainer)
        if trainer.stage == "caption_lm":  # the caption stage's first checkpoint is on disk...
            raise KeyboardInterrupt  # ...then the machine goes away
        return path

    monkeypatch.setattr(DPTrainer, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        first.fit(albums, cfg, output_dir=tmp_path / "ckpt")
    monkeypatch.undo()
    assert (tmp_path / "ckpt" / "caption_lm" / "checkpoint-1").is_dir()
    drawn = json.loads((tmp_path / "ckpt" / "album_lengths.json").read_text())
    summary_weights = {k: v.clone() for k, v in first.summary_lm.model.state_dict().items()}

    again = AlbumGenerator(spec, ModelChoice(model="scratch"))
    ledger = again.fit(albums, cfg, output_dir=tmp_path / "ckpt")
    assert again.lengths.to_dict() == drawn
    assert all(torch.equal(v, summary_weights[k]) for k, v in again.summary_lm.model.state_dict().items())
    assert [e.stage for e in ledger.events] == ["album_length_histogram", "summary_lm", "caption_lm"]
    assert [e.steps for e in ledger.events] == [1, 2, 2] and ledger.epsilon() <= 6.0
    with pytest.raises(ConfigError, match="drawn for other album bounds"):
        AlbumGenerator(dataclasses.replace(spec, max_photos_per_album=3), ModelChoice(model="scratch")).fit(
            albums, cfg, output_dir=tmp_path / "ckpt")


def test_a_user_with_many_albums_moves_each_lm_stage_as_one_unit(tmp_path):
    """User u0 owns three albums of four photos: 3 summary rows and 12 caption rows.  Adding u0 moves each
    LM stage's clipped summed gradient by at most C, and by C with flat clipping: all of u0's rows are
    clipped as one unit, not as 12 (which could move it by up to 12 C)."""
    require_emoji_fixture()
    from evaluation.fixtures.albums import EmojiAlbums
    from synth.albums import AlbumGenerator, AlbumPhoto, AlbumRecord, AlbumsSpec, bound_albums
    from synth.lm import ModelChoice

    from ..lm_units import clipped_sum

    maker = EmojiAlbums(image_size=16, min_photos=4, max_photos=6)
    drawn = maker.albums(6, seed=3, users=6)
    albums = [AlbumRecord(a.album_id, "u0" if i < 3 else f"u{i}", [AlbumPhoto(tmp_path, None, p.caption)
                                                                   for p in a.photos], summary=a.summary)
              for i, a in enumerate(drawn)]
    spec = AlbumsSpec(max_albums_per_user=3, max_photos_per_album=4, images="none")
    kept, report = bound_albums(albums, spec, seed=0)
    assert report.users == 4 and report.albums_kept == 6 and all(len(a.photos) == 4 for a in kept)
    torch.manual_seed(0)
    gen = AlbumGenerator(spec, ModelChoice(model="scratch"))
    summaries, captions = gen.training_frames(kept)
    for lm, frame, heavy_rows in ((gen.summary_lm, summaries, 3), (gen.caption_lm, captions, 12)):
        rows, units, _ = lm.chunk(frame)
        assert units.count("u0") == heavy_rows
        model = lm.model.double()
        heavy = [i for i, u in enumerate(units) if u == "u0"]
        others = [i for i, u in enumerate(units) if u != "u0"]
        for clipping in ("flat", "per_layer"):
            moved = (clipped_sum(model, rows, units, [heavy, others], clipping)
                     - clipped_sum(model, rows, units, [others], clipping)).norm().item()
            assert moved <= 1.0 + 1e-6
            if clipping == "flat":
                assert moved > 0.99
        assert lm.spec.max_chunks_per_unit == heavy_rows  # the trainer takes all of a sampled user's rows
        lm.model.float()


ALBUM_CONFIG = """
[data]
path = "albums"
[albums]
max_albums_per_user = 1
max_photos_per_album = 4
public_images = "public"
pretrain_steps = 1
sampling_steps = 2
max_new_tokens = 8
[model]
model = "scratch"
[image_model]
model = "tiny"
image_size = 16
caption_tokens = 12
train_timesteps = 50
[train]
target_epsilon = 8.0
expected_batch_size = 3
physical_batch_size = 8
steps = 1
progress = false
[generate]
n = 3
[output]
dir = "run"
"""


def test_dpsynth_run_with_an_albums_config_exports_album_folders_that_datasets_reads(tmp_path, capsys):
    require_emoji_fixture()
    from evaluation.fixtures.albums import EmojiAlbums, write_album_folder
    from evaluation.fixtures.emoji import EmojiScenes, write_emoji_imagefolder
    from synth.cli.main import main

    write_album_folder(tmp_path / "albums", EmojiAlbums(image_size=16).albums(10, seed=4, users=6))
    write_emoji_imagefolder(tmp_path / "public", 16, seed=9, scenes=EmojiScenes(image_size=16))
    (tmp_path / "run.toml").write_text(ALBUM_CONFIG)
    assert main(["run", str(tmp_path / "run.toml")]) == 0
    export = tmp_path / "run" / "export"
    card = json.loads((export / "dpsynth.json").read_text())
    assert card["paid_for"] == ["album_length_histogram", "summary_lm", "caption_lm", "unet"]
    assert card["privacy"]["privacy_unit"] == "user" and card["privacy"]["epsilon"] <= 8.0
    assert "public pretraining images" in " ".join(card["declared_public"])
    albums = sorted(p.parent.name for p in export.glob("*/album.json"))
    assert len(albums) == 3
    import datasets

    ds = datasets.load_dataset("imagefolder", data_dir=str(export), split="train")
    assert len(ds) == sum(len(json.loads((export / a / "album.json").read_text())["photos"]) for a in albums)
    assert set(ds.column_names) >= {"image", "album_id", "summary", "text"}
    assert "wrote 3 synthetic albums" in capsys.readouterr().out
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert report["bounds"]["albums_kept"] == 6 < report["bounds"]["albums_read"] == 10
    from synth.albums import load_album_folder

    again = load_album_folder(export, size=16, require_users=False)  # the export reads back as an album folder
    assert [len(a.photos) for a in again] == [len(json.loads((export / a / "album.json").read_text())["photos"])
                                              for a in albums]
    assert all(p.image.shape == (3, 16, 16) and p.caption for a in again for p in a.photos)
    from trainer.errors import DPSynthError

    with pytest.raises(DPSynthError, match="needs 'user_id'"):
        load_album_folder(export, size=16)  # training data must say whose albums they are
    assert main(["evaluate", "--spec", str(tmp_path / "run.toml"), "--real", str(tmp_path / "albums"),
                 "--heldout", str(tmp_path / "albums"), "--synthetic", str(export), "--out", str(tmp_path / "eval")]) != 0
    assert "scores 32 px photos; this run makes 16 px" in capsys.readouterr().err
    # train and generate as two commands (the generator folder reloads with its ledger)
    shutil.rmtree(tmp_path / "run")
    assert main(["train", str(tmp_path / "run.toml")]) == 0
    assert main(["generate", str(tmp_path / "run.toml")]) == 0
    assert json.loads((export / "dpsynth.json").read_text())["rows"] == 3


@pytest.mark.slow
def test_album_demo_runs_on_its_own_fixture(tmp_path, capsys):
    """The bundled album demo end to end (scratch LMs and one step per stage, to keep it quick)."""
    require_emoji_fixture()
    from synth.cli.main import main

    out = tmp_path / "demo"
    assert main(["demo", "albums", "--output.dir", str(out), "--model.model", "scratch", "--model.finetune", "full",
                 "--train.steps", "1", "--albums.pretrain_steps", "1", "--albums.image_steps", "1",
                 "--generate.n", "2", "--albums.sampling_steps", "2", "--albums.max_new_tokens", "8",
                 "--image_model.image_size", "16", "--train.progress", "false"]) == 0
    assert len(list((out / "fixture" / "private").glob("photos/*"))) == 300
    card = json.loads((out / "export" / "dpsynth.json").read_text())
    assert card["rows"] == 2 and card["privacy"]["privacy_unit"] == "user" and card["privacy"]["epsilon"] <= 8.0
    assert "wrote 2 synthetic albums" in capsys.readouterr().out


def test_dpsynth_evaluate_scores_text_only_albums_against_held_out_ones(tmp_path, capsys):
    require_emoji_fixture()
    from evaluation.fixtures.albums import EmojiAlbums, write_album_folder
    from synth.cli.main import main

    maker = EmojiAlbums(image_size=16)
    write_album_folder(tmp_path / "albums", maker.albums(12, seed=4, users=8))
    write_album_folder(tmp_path / "heldout", maker.albums(12, seed=5))
    config = ALBUM_CONFIG.replace('public_images = "public"\npretrain_steps = 1\n', 'images = "none"\n')
    (tmp_path / "run.toml").write_text(config.replace("n = 3", "n = 12"))
    assert main(["run", str(tmp_path / "run.toml")]) == 0
    export = tmp_path / "run" / "export"
    assert not (export / "metadata.jsonl").exists() and (export / "albums.jsonl").is_file()
    assert main(["evaluate", "--spec", str(tmp_path / "run.toml"), "--real", str(tmp_path / "albums"), "--heldout",
                 str(tmp_path / "heldout"), "--synthetic", str(export), "--out", str(export)]) != 0
    assert "is an export folder" in capsys.readouterr().err
    assert main(["evaluate", "--spec", str(tmp_path / "run.toml"), "--real", str(tmp_path / "albums"), "--heldout",
                 str(tmp_path / "heldout"), "--synthetic", str(export), "--out", str(tmp_path / "eval")]) == 0
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    values = {m["name"]: m for m in report["metrics"]}
    assert values["summaries/mauve"]["n_synthetic"] == 12 and values["summaries/mauve"]["value"] is not None
    assert values["caption_hero_consistency_real"]["value"] > 0.75  # the held-out yardstick
    assert values["memorisation/summary_copy_share"]["n_synthetic"] == 12
    assert "fid" not in values and "photos not scored" in report["info"]["headline"]
    assert "caption_hero_consistency" in capsys.readouterr().out
