"""Album coherence separates real albums from albums whose photos were shuffled between albums."""

import numpy as np
import pytest

from tests.emoji import require_emoji_fixture


def _as_dicts(albums, shuffle_seed=None):
    out = [{"summary": a.summary, "captions": [p.caption for p in a.photos], "images": [p.image for p in a.photos]}
           for a in albums]
    if shuffle_seed is not None:  # deal every photo (caption + image) to a random album
        photos = [(c, im) for a in out for c, im in zip(a["captions"], a["images"], strict=True)]
        order = np.random.default_rng(shuffle_seed).permutation(len(photos))
        it = iter(photos[i] for i in order)
        for a in out:
            pairs = [next(it) for _ in a["captions"]]
            a["captions"], a["images"] = [c for c, _ in pairs], [im for _, im in pairs]
    return out


@pytest.mark.slow
def test_real_albums_are_coherent_and_shuffled_ones_are_not(tmp_path):
    require_emoji_fixture()
    from evaluation.albums.coherence import album_coherence
    from evaluation.fixtures.albums import EmojiAlbums
    from evaluation.scene_net import FeatureNetSpec, SceneFeatures

    maker = EmojiAlbums()
    net = SceneFeatures.trained_on_fixture(FeatureNetSpec(objects=maker.objects, backgrounds="albums", n_train=6000, epochs=8),
                                           cache_dir=tmp_path)
    albums = maker.albums(80, seed=11)
    real = {m.name: m.value for m in album_coherence(_as_dicts(albums), features=net)}
    mixed = {m.name: m.value for m in album_coherence(_as_dicts(albums, shuffle_seed=0), features=net)}
    assert real["summary_names_theme_and_hero"] == 1.0
    assert real["caption_hero_consistency"] > 0.75 and mixed["caption_hero_consistency"] < 0.35
    assert real["caption_theme_agreement"] == 1.0 and mixed["caption_theme_agreement"] < 0.5
    assert real["photo_hero_consistency"] > 0.65 and mixed["photo_hero_consistency"] < real["photo_hero_consistency"] - 0.3
    assert real["photo_same_hero"] > mixed["photo_same_hero"] + 0.2
    assert real["photo_theme_agreement"] > 0.85 and mixed["photo_theme_agreement"] < 0.5
    no_images = album_coherence([{k: v for k, v in a.items() if k != "images"} for a in _as_dicts(albums)])
    assert [m.name for m in no_images] == ["summary_names_theme_and_hero", "caption_hero_consistency",
                                           "caption_theme_agreement"]
