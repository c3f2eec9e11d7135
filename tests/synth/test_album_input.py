"""Album folders in: albums.jsonl or an imagefolder with album_id / user_id; bad input named."""

import json
import re
import shutil

import pytest

from evaluation.tables import DataError
from synth.albums import load_album_folder
from tests.emoji import require_emoji_fixture


@pytest.fixture
def folder(tmp_path):
    require_emoji_fixture()
    from evaluation.fixtures.albums import EmojiAlbums, write_album_folder

    return write_album_folder(tmp_path / "albums", EmojiAlbums(image_size=16).albums(6, seed=2))


def _rewrite(folder, edit):
    rows = [json.loads(line) for line in (folder / "albums.jsonl").read_text().splitlines()]
    edit(rows)
    (folder / "albums.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_albums_jsonl_reads_albums_photos_captions_and_summaries(folder):
    albums = load_album_folder(folder, size=16)
    assert len(albums) == 6 and all(a.summary and a.photos for a in albums)
    assert albums[0].photos[0].image.shape == (3, 16, 16) and albums[0].photos[0].caption
    assert albums[0].extra["theme"] in albums[0].summary


@pytest.mark.parametrize("edit, message", [
    (lambda rows: rows[1].update(album_id=rows[0]["album_id"]), "line 2: album_id 'album00000' is also on line 1"),
    (lambda rows: rows[2].update(photos=[]), "line 3 (album 'album00002'): an album needs a non-empty \"photos\""),
    (lambda rows: rows[0].pop("user_id"), "line 1 (album 'album00000'): needs 'user_id'"),
    (lambda rows: rows[3]["photos"][0].update(file="photos/nope.png"), "photos/nope.png does not exist"),
])
def test_bad_albums_are_named(folder, edit, message):
    _rewrite(folder, edit)
    with pytest.raises(DataError, match=re.escape(message)):
        load_album_folder(folder, size=16)


def test_an_unreadable_image_and_the_imagefolder_layout(folder):
    first = json.loads((folder / "albums.jsonl").read_text().splitlines()[0])
    (folder / first["photos"][0]["file"]).write_text("not a png")
    with pytest.raises(DataError, match=r"line 1 \(album 'album00000'\): .* is not a readable image"):
        load_album_folder(folder, size=16)
    rows = [json.loads(line) for line in (folder / "albums.jsonl").read_text().splitlines()][1:]
    (folder / "albums.jsonl").unlink()
    shutil.rmtree(folder / "photos" / first["album_id"])
    (folder / "metadata.jsonl").write_text("".join(
        json.dumps({"file_name": p["file"], "album_id": r["album_id"], "user_id": r["user_id"], "text": p["caption"]})
        + "\n" for r in rows for p in r["photos"]))
    albums = load_album_folder(folder, size=16)
    assert [a.album_id for a in albums] == [r["album_id"] for r in rows]
    assert [len(a.photos) for a in albums] == [len(r["photos"]) for r in rows]


def test_a_text_only_export_with_an_empty_sampled_caption_reads_back(tmp_path):
    """A caption LM may end a caption at once: the text-only export writes {"caption": ""}, and reading the
    export for evaluation keeps that photo (empty caption) rather than asking for an image file; a photo
    with neither a file nor a caption string is still refused."""
    import json

    rows = [{"album_id": "a0", "summary": "a trip", "photos": [{"caption": "a cat"}, {"caption": ""}]}]
    (tmp_path / "albums.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    albums = load_album_folder(tmp_path, size=16, require_users=False, require_images=False)
    assert [p.caption for p in albums[0].photos] == ["a cat", ""] and albums[0].photos[1].image is None
    rows[0]["photos"].append({})
    (tmp_path / "albums.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(DataError, match="photo 2 needs a \"file\" string"):
        load_album_folder(tmp_path, size=16, require_users=False, require_images=False)
