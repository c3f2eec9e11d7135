"""The emoji album fixture: themed albums with a recurring hero, owned by users, from a seed."""

import json

import numpy as np

from tests.emoji import require_emoji_fixture


def test_albums_have_a_theme_a_recurring_hero_and_owners_with_several_albums(tmp_path):
    require_emoji_fixture()
    from evaluation.fixtures.albums import THEMES, EmojiAlbums, write_album_folder

    albums = EmojiAlbums().albums(60, seed=3)
    assert all(4 <= len(a.photos) <= 8 and a.theme in a.summary and a.hero in a.summary for a in albums)
    hero_share = np.mean([np.mean([a.hero in p.objects for p in a.photos]) for a in albums])
    assert 0.75 < hero_share < 0.95
    theme_objects = [o for a in albums for p in a.photos for o in p.objects if o != a.hero]
    assert all(any(o in t["objects"] for t in THEMES.values()) for o in theme_objects)
    assert all(o in THEMES[a.theme]["objects"] for a in albums for p in a.photos for o in p.objects if o != a.hero)
    owners = [a.user_id for a in albums]
    assert len(set(owners)) < len(owners) and len({a.album_id for a in albums}) == 60
    again = EmojiAlbums().albums(60, seed=3)
    assert [p.caption for a in again for p in a.photos] == [p.caption for a in albums for p in a.photos]
    folder = write_album_folder(tmp_path / "albums", albums[:5])
    rows = [json.loads(line) for line in (folder / "albums.jsonl").read_text().splitlines()]
    assert [r["album_id"] for r in rows] == [a.album_id for a in albums[:5]]
    assert all((folder / p["file"]).is_file() and p["caption"] for r in rows for p in r["photos"])
