"""evaluate_albums: real albums score as real; albums whose captions were dealt at random lose the
summary-caption dependency, the within-album closeness and the hero, and the report says so."""

import numpy as np
import pytest

from tests.emoji import require_emoji_fixture


def _dicts(albums, *, shuffle_seed=None, images=False):
    out = [{"summary": a.summary, "captions": [p.caption for p in a.photos],
            **({"images": [p.image for p in a.photos]} if images else {})} for a in albums]
    if shuffle_seed is not None:  # deal every photo to a random album, keeping the album lengths
        photos = [(c, a.get("images", [None] * len(a["captions"]))[i]) for a in out for i, c in enumerate(a["captions"])]
        it = iter(photos[i] for i in np.random.default_rng(shuffle_seed).permutation(len(photos)))
        for a in out:
            pairs = [next(it) for _ in a["captions"]]
            a["captions"] = [c for c, _ in pairs]
            if images:
                a["images"] = [im for _, im in pairs]
    return out


@pytest.fixture(scope="module")
def albums():
    require_emoji_fixture()
    from evaluation.fixtures.albums import EmojiAlbums

    maker = EmojiAlbums()
    return maker, maker.albums(60, seed=1), maker.albums(60, seed=2), maker.albums(60, seed=3)


def test_text_metrics_separate_real_from_shuffled_albums(albums):
    from evaluation import Encoder
    from evaluation.albums.evaluate import evaluate_albums

    _, private, heldout, fresh = albums
    enc = Encoder()
    real = evaluate_albums(_dicts(fresh), _dicts(heldout), encoder=enc, private=_dicts(private))
    mixed = evaluate_albums(_dicts(fresh, shuffle_seed=0), _dicts(heldout), encoder=enc, private=_dicts(private))
    r, m = (lambda n: real.value(n)), (lambda n: mixed.value(n))
    # the summaries are untouched by the shuffle: the same topic shares, the same MAUVE
    assert r("summaries/topic_tv") == m("summaries/topic_tv") < 0.3
    assert r("summaries/mauve") == m("summaries/mauve")
    # what ties an album together is gone
    assert m("knd/summary~caption") > 2 * r("knd/summary~caption")
    assert r("albums/caption_intra_inter_ratio") < 0.95 < m("albums/caption_intra_inter_ratio")
    assert abs(r("albums/caption_intra_inter_ratio") - r("albums/caption_intra_inter_ratio_real")) < 0.05
    assert r("caption_hero_consistency") > 0.75 > 0.35 > m("caption_hero_consistency")
    assert r("caption_hero_consistency_real") == m("caption_hero_consistency_real") > 0.75
    # memorisation is shown beside the held-out yardstick
    assert r("memorisation/summary_copy_share") == pytest.approx(r("memorisation/heldout_summary_copy_share"), abs=0.25)
    assert "photos not scored" in real.info["headline"]
    assert len(real.info["examples"]["synthetic albums"]) == 6


@pytest.mark.slow
def test_photo_metrics_and_grids(albums, tmp_path):
    from evaluation import Encoder
    from evaluation.albums.evaluate import album_feature_net, evaluate_albums
    from evaluation.scene_net import SceneFeatures

    maker, private, heldout, fresh = albums
    net = SceneFeatures.trained_on_fixture(album_feature_net(), cache_dir=tmp_path)
    enc = Encoder()
    real = evaluate_albums(_dicts(fresh, images=True), _dicts(heldout, images=True), encoder=enc, features=net,
                           private=_dicts(private, images=True))
    mixed = evaluate_albums(_dicts(fresh, shuffle_seed=0, images=True), _dicts(heldout, images=True), encoder=enc,
                            features=net)
    assert real.value("albums/photo_intra_inter_ratio") < mixed.value("albums/photo_intra_inter_ratio")
    assert real.value("photo_same_hero") > mixed.value("photo_same_hero") + 0.2
    assert real.value("caption_consistency") > 0.6
    assert real.value("fid") == pytest.approx(mixed.value("fid"))  # the same photos, dealt differently
    assert real.value("memorisation/near_copy_share") < 0.1
    assert len(real.grids) == 12 and "album" in next(iter(real.grids))
    html = (real.save(tmp_path / "report")["html"]).read_text()
    assert "Examples" in html and "caption_hero_consistency_real" in html
