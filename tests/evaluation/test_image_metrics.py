"""Image metrics on the public emoji fixture: each figure moves the way it should between a good
generator (real renders), a bad one (noise, wrong captions) and a copying one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.emoji import require_emoji_fixture


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    require_emoji_fixture()
    from evaluation.scene_net import FeatureNetSpec, SceneFeatures

    spec = FeatureNetSpec(n_train=3000, epochs=5, objects=("dog", "cat", "sun", "fish", "house", "rocket"))
    return SceneFeatures.trained_on_fixture(spec, cache_dir=tmp_path_factory.mktemp("cache"))


def _split(net, n, seed):
    from evaluation.fixtures.emoji import EmojiScenes

    scenes = EmojiScenes(objects=net.spec.objects).scenes(n, seed)
    return [s.image for s in scenes], [s.caption for s in scenes]


def test_fixture_captions_name_their_objects_and_places():
    require_emoji_fixture()
    from evaluation.fixtures.emoji import EmojiScenes, caption_for, emoji_catalogue
    from evaluation.scene_net import objects_in_caption

    assert len(emoji_catalogue()) > 3000 and {"Animals & Nature", "Food & Drink"} <= {e.group for e in emoji_catalogue()}
    scenes = EmojiScenes().scenes(200, seed=5)
    assert all(objects_in_caption(s.caption, EmojiScenes().objects) == sorted(s.objects, key=EmojiScenes().objects.index)
               for s in scenes)
    assert caption_for(["dog", "palm tree"], [(4, 16), (26, 16)], "on sand", 32) == "a dog left of a palm tree on sand"
    assert caption_for(["sun"], [(28, 3)], "at night", 32) == "a sun at the top right at night"
    again = EmojiScenes().scenes(3, seed=5)  # a split is a seed
    assert [np.asarray(s.image).tobytes() for s in again] == [np.asarray(s.image).tobytes() for s in scenes[:3]]


@pytest.mark.slow
def test_image_metrics_separate_real_from_noise_and_catch_copies(net, tmp_path):
    from evaluation.images.evaluate import evaluate_images

    private, private_caps = _split(net, 300, seed=1)
    held, held_caps = _split(net, 300, seed=2)
    good, good_caps = _split(net, 300, seed=3)  # a perfect generator: fresh renders of the same distribution
    good_report = evaluate_images(good, good_caps, held, held_caps, features=net, private=private,
                                  private_captions=private_caps, seed=0)
    noise = torch.rand(300, 3, 32, 32) * 2 - 1
    bad_report = evaluate_images(noise, good_caps, held, held_caps, features=net, seed=0, utility=False)
    copy_report = evaluate_images(private[:100], private_caps[:100], held, held_caps, features=net, private=private,
                                  private_captions=private_caps, seed=0, utility=False)
    g, b, c = good_report.value, bad_report.value, copy_report.value
    assert g("fid") * 20 < b("fid")
    assert g("knn_precision") > 0.6 and b("knn_precision") < 0.3
    assert g("caption_consistency") > 0.75 and g("caption_consistency_real") > 0.75
    assert b("caption_consistency") < g("caption_consistency") - 0.3
    wrong = evaluate_images(good, good_caps[1:] + good_caps[:1], held, held_caps, features=net, seed=0, utility=False)
    # captions that belong to other images: only chance overlaps of 1-3 of 6 objects are found
    assert wrong.value("caption_consistency") < g("caption_consistency") - 0.3
    assert g("utility/tstr_object_f1") > g("utility/floor_object_f1") + 0.3
    assert abs(g("utility/tstr_object_f1") - g("utility/trtr_object_f1")) < 0.15
    assert g("memorisation/near_copy_share") < 0.1 and c("memorisation/near_copy_share") == 1.0
    assert c("memorisation/nearest_pixel_distance_mean") == 0.0
    paths = good_report.save(tmp_path)
    html = paths["html"].read_text()
    assert html.count("data:image/png;base64") >= 2 and "synthetic images" in html
