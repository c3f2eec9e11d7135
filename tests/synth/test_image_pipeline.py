"""`dpsynth run` with an [images] config: an imagefolder in, DP training (after optional public
pretraining), resumable generation, an imagefolder export with its card; bad input named."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("diffusers")

from synth.cli.main import main  # noqa: E402
from tests.emoji import require_emoji_fixture  # noqa: E402

OBJECTS = ("dog", "cat", "sun", "fish")


def _fixture(folder, n, seed):
    from evaluation.fixtures.emoji import EmojiScenes, write_emoji_imagefolder

    return write_emoji_imagefolder(folder, n, seed=seed, scenes=EmojiScenes(image_size=16, objects=OBJECTS))


CONFIG = """
[data]
path = "private"
[images]
conditioning = "caption"
prompts = "prompts.txt"
public_images = "public"
pretrain_steps = 2
sampling_steps = 3
[model]
model = "tiny"
image_size = 16
caption_tokens = 12
train_timesteps = 50
[train]
target_epsilon = 8.0
expected_batch_size = 8
physical_batch_size = 8
steps = 2
progress = false
[generate]
n = 5
batch_size = 4
[output]
dir = "run"
"""


def test_caption_images_run_pretrains_on_public_images_and_exports_an_imagefolder(tmp_path, capsys):
    require_emoji_fixture()
    _fixture(tmp_path / "private", 24, seed=1)
    _fixture(tmp_path / "public", 24, seed=2)
    (tmp_path / "prompts.txt").write_text("a dog on sand\n\na cat at night\n")
    (tmp_path / "run.toml").write_text(CONFIG)
    assert main(["run", str(tmp_path / "run.toml")]) == 0
    export = tmp_path / "run" / "export"
    rows = [json.loads(line) for line in (export / "metadata.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == ["a dog on sand", "a cat at night"] * 2 + ["a dog on sand"]  # prompts cycled
    assert all((export / r["file_name"]).is_file() for r in rows)
    card = json.loads((export / "dpsynth.json").read_text())
    assert card["paid_for"] == ["unet"] and 0 < card["privacy"]["epsilon"] <= 8.0
    public = " ".join(card["declared_public"])
    assert "public pretraining images" in public and "24 images, 2 steps without noise" in public
    assert "generation prompts" in public and "all-MiniLM-L6-v2" in public
    readme = (export / "README.md").read_text()
    assert "5 synthetic images" in readme and "differential privacy" in readme
    assert (tmp_path / "run" / "pretrain_checkpoints").is_dir()
    from evaluation.scene_net import to_tensor  # the export is a loadable imagefolder
    from synth.images import load_image_folder

    again = load_image_folder(export, size=16)
    assert len(again.images) == 5 and again.field("text", export)[1] == "a cat at night"
    assert to_tensor(again.images).shape == (5, 3, 16, 16)
    out = capsys.readouterr().out
    assert "wrote 5 synthetic images" in out

    # generation resumes part by part: a removed export is rebuilt from the saved parts, same images
    first = (export / "images" / "000004.png").read_bytes()
    shutil.rmtree(export)
    assert main(["generate", str(tmp_path / "run.toml")]) == 0
    assert (export / "images" / "000004.png").read_bytes() == first


def test_class_images_pay_for_their_histogram_and_bad_folders_are_named(tmp_path, capsys):
    require_emoji_fixture()
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / "private" / cls).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (16, 16), (40 * i, 100, 200 if cls == "cat" else 20)).save(
                tmp_path / "private" / cls / f"{i}.png")
    config = CONFIG.replace('conditioning = "caption"\nprompts = "prompts.txt"\npublic_images = "public"\n'
                            'pretrain_steps = 2', 'conditioning = "class"\nclasses = ["cat", "dog"]')
    (tmp_path / "run.toml").write_text(config)
    assert main(["run", str(tmp_path / "run.toml")]) == 0
    export = tmp_path / "run" / "export"
    card = json.loads((export / "dpsynth.json").read_text())
    assert card["paid_for"] == ["conditioning_histogram", "unet"]
    labels = [json.loads(line)["label"] for line in (export / "metadata.jsonl").read_text().splitlines()]
    assert len(labels) == 5 and set(labels) <= {"cat", "dog"}

    (tmp_path / "private" / "bird").mkdir()
    Image.new("RGB", (16, 16)).save(tmp_path / "private" / "bird" / "0.png")
    assert main(["run", str(tmp_path / "run.toml"), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "classes ['bird'] are not in images.classes" in err and "Traceback" not in err


def test_images_config_errors_name_the_field(tmp_path, capsys):
    (tmp_path / "run.toml").write_text(CONFIG.replace('model = "tiny"', 'model = "tiny"\ncaptions = true'))
    assert main(["run", str(tmp_path / "run.toml")]) == 2
    assert "model.captions: set images.conditioning" in capsys.readouterr().err
    (tmp_path / "run.toml").write_text(CONFIG.replace('prompts = "prompts.txt"\n', ""))
    assert main(["run", str(tmp_path / "run.toml")]) == 2
    assert "images.prompts" in capsys.readouterr().err
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "a.png").write_bytes(b"")
    (tmp_path / "private" / "metadata.jsonl").write_text('{"file_name": "a.png", "text": "x"}\nnot json\n')
    (tmp_path / "prompts.txt").write_text("a dog\n")
    (tmp_path / "run.toml").write_text(CONFIG.replace('public_images = "public"\npretrain_steps = 2\n', ""))
    assert main(["run", str(tmp_path / "run.toml")]) == 2
    assert "metadata.jsonl, line 2: not JSON" in capsys.readouterr().err


@pytest.mark.slow
def test_image_demo_runs_on_its_own_fixture(tmp_path, capsys):
    require_emoji_fixture()
    out = tmp_path / "demo"
    assert main(["demo", "images", "--output.dir", str(out), "--train.steps", "1", "--images.pretrain_steps", "1",
                 "--generate.n", "3", "--images.sampling_steps", "2", "--model.image_size", "16",
                 "--train.progress", "false"]) == 0
    assert len(list((out / "fixture" / "private" / "images").glob("*.png"))) == 2000
    card = json.loads((out / "export" / "dpsynth.json").read_text())
    assert card["rows"] == 3 and card["privacy"]["privacy_unit"] == "image"
    assert "wrote 3 synthetic images" in capsys.readouterr().out


@pytest.mark.slow
def test_dpsynth_evaluate_scores_an_image_export(tmp_path, capsys):
    require_emoji_fixture()
    from evaluation.fixtures.emoji import write_emoji_imagefolder

    for name, seed in (("private", 1), ("heldout", 2), ("export", 3)):
        write_emoji_imagefolder(tmp_path / name, 40, seed=seed)
    (tmp_path / "run.toml").write_text('[data]\npath = "private"\n[images]\nconditioning = "caption"\n'
                                       'prompts = "p.txt"\n[model]\nimage_size = 32\n')
    args = ["evaluate", "--spec", str(tmp_path / "run.toml"), "--real", str(tmp_path / "private"), "--heldout",
            str(tmp_path / "heldout"), "--synthetic", str(tmp_path / "export"), "--out", str(tmp_path / "report"),
            "--cache-dir", str(tmp_path / "cache"), "--feature-net-images", "600", "--utility-steps", "20"]
    assert main(args) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    names = {m["name"] for m in report["metrics"]}
    assert {"fid", "caption_consistency", "utility/tstr_object_f1", "memorisation/near_copy_share"} <= names
    assert "caption_consistency" in capsys.readouterr().out
    assert main([*args[:9], "--out", str(tmp_path / "export")]) == 2  # never into the synthetic folder


def test_user_level_images_clip_all_of_a_users_images_as_one_unit(tmp_path):
    require_emoji_fixture()
    _fixture(tmp_path / "private", 24, seed=1)
    meta = tmp_path / "private" / "metadata.jsonl"
    rows = [json.loads(line) for line in meta.read_text().splitlines()]
    meta.write_text("".join(json.dumps({**r, "user": f"u{i % 8}"}) + "\n" for i, r in enumerate(rows)))
    (tmp_path / "prompts.txt").write_text("a dog on sand\n")
    config = CONFIG.replace('public_images = "public"\npretrain_steps = 2\n',
                            'privacy_unit = "user"\nmax_images_per_user = 2\n')
    config = config.replace("expected_batch_size = 8\nphysical_batch_size = 8", "expected_batch_size = 4\n"
                            "physical_batch_size = 8")
    (tmp_path / "run.toml").write_text(config)
    assert main(["run", str(tmp_path / "run.toml")]) == 0
    card = json.loads((tmp_path / "run" / "export" / "dpsynth.json").read_text())
    assert card["privacy"]["privacy_unit"] == "user" and card["privacy"]["max_examples_per_user"] == 2
    assert card["privacy"]["stages"][0]["sample_rate"] == 4 / 8  # q counts users, not images
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert report["units"] == 8 and report["users_over_bound"] == 8 and report["most_images_of_a_user"] == 3
    assert "contributes at most 2 images per step" in (tmp_path / "run" / "export" / "README.md").read_text()
