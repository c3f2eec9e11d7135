"""Read an album folder: ``albums.jsonl`` (one album a line: ``album_id``, ``user_id``, optional
``title`` and ``summary``, ``photos: [{file, caption?}]``) plus the image files; or the Hugging Face
``imagefolder`` layout, a ``metadata.jsonl`` with one photo a line (``file_name``, ``album_id``,
``user_id``, optional ``text`` caption, ``summary``).

Every problem names the file, the line and the album, and says what to do: a missing or unreadable
image, an album without photos, an id used twice, an album whose user is missing.  Nothing is
dropped silently (bounds on albums per user and photos per album are applied by the trainer and
counted, not here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from evaluation.tables import DataError

from ..image_files import jsonl_objects, read_image


@dataclass
class AlbumPhoto:
    file: Path
    image: torch.Tensor | None  # (C, H, W) in [-1, 1]; None for a text-only album read with require_images=False
    caption: str | None


@dataclass
class AlbumRecord:
    album_id: str
    user_id: str
    photos: list[AlbumPhoto]
    title: str | None = None
    summary: str | None = None
    extra: dict = field(default_factory=dict)  # other fields of the line (e.g. a fixture's theme)


def _text(value, where: str, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise DataError(f"{where}: {name} must be a string, got {type(value).__name__}")
    return value.strip() or None


def _ident(row: dict, key: str, where: str, default: str | None = None) -> str:
    value = row.get(key, default)
    if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value).strip() == "":
        raise DataError(f"{where}: needs {key!r} (a string or an integer)")
    return str(value)


def _from_albums_jsonl(folder: Path, size: int, channels: int, users: bool, images: bool) -> list[AlbumRecord]:
    albums, seen = [], {}
    for where, row in jsonl_objects(folder / "albums.jsonl"):
        album_id = _ident(row, "album_id", where)
        if album_id in seen:
            raise DataError(f"{where}: album_id {album_id!r} is also on {seen[album_id]}; ids must be unique")
        seen[album_id] = where.rsplit(", ", 1)[1]
        where = f"{where} (album {album_id!r})"
        user_id = _ident(row, "user_id", where, None if users else album_id)
        photos = row.get("photos")
        if not isinstance(photos, list) or not photos:
            raise DataError(f"{where}: an album needs a non-empty \"photos\" list of {{file, caption}}")
        files = set()
        loaded = []
        for j, photo in enumerate(photos):
            caption = _text(photo.get("caption"), where, f"photo {j} caption") if isinstance(photo, dict) else None
            if not images and isinstance(photo, dict) and "file" not in photo and isinstance(photo.get("caption"), str):
                # a text-only album (an export before images); a sampled caption may be empty: kept as ""
                loaded.append(AlbumPhoto(folder, None, caption or ""))
                continue
            if not isinstance(photo, dict) or not isinstance(photo.get("file"), str):
                raise DataError(f"{where}: photo {j} needs a \"file\" string")
            if photo["file"] in files:
                raise DataError(f"{where}: photo file {photo['file']} is listed twice")
            files.add(photo["file"])
            loaded.append(AlbumPhoto(folder / photo["file"], read_image(folder / photo["file"], size=size, channels=channels, where=where),
                                     caption))
        extra = {k: v for k, v in row.items() if k not in ("album_id", "user_id", "photos", "title", "summary")}
        albums.append(AlbumRecord(album_id, user_id, loaded, _text(row.get("title"), where, "title"),
                                  _text(row.get("summary"), where, "summary"), extra))
    return albums


def _from_imagefolder(folder: Path, size: int, channels: int, users: bool) -> list[AlbumRecord]:
    by_album: dict[str, AlbumRecord] = {}
    files = set()
    for where, row in jsonl_objects(folder / "metadata.jsonl"):
        if not isinstance(row.get("file_name"), str):
            raise DataError(f"{where}: needs a \"file_name\" string")
        if row["file_name"] in files:
            raise DataError(f"{where}: {row['file_name']} is listed twice")
        files.add(row["file_name"])
        album_id = _ident(row, "album_id", where)
        user_id = _ident(row, "user_id", where, None if users else album_id)
        album = by_album.setdefault(album_id, AlbumRecord(album_id, user_id, [], summary=_text(
            row.get("summary"), where, "summary")))
        if album.user_id != user_id:
            raise DataError(f"{where}: album {album_id!r} belongs to user {album.user_id!r} on an earlier line, "
                            f"here to {user_id!r}")
        album.photos.append(AlbumPhoto(folder / row["file_name"], read_image(folder / row["file_name"], size=size,
                                                                              channels=channels, where=where), _text(row.get("text"), where, "text")))
    return list(by_album.values())


def load_album_folder(folder: str | Path, *, size: int, channels: int = 3, require_users: bool = True,
                      require_images: bool = True) -> list[AlbumRecord]:
    """The albums of ``folder``.  Training needs both defaults; reading synthetic albums (an export) for
    evaluation passes ``require_users=False`` (an album without ``user_id`` is its own user) and
    ``require_images=False`` (a photo may be a caption only, as a text-only export writes it)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"album folder {folder} does not exist or is not a folder")
    if (folder / "albums.jsonl").is_file():
        albums = _from_albums_jsonl(folder, size, channels, require_users, require_images)
    elif (folder / "metadata.jsonl").is_file():
        albums = _from_imagefolder(folder, size, channels, require_users)
    else:
        raise DataError(f"{folder}: no albums.jsonl (one album a line) or metadata.jsonl (imagefolder, one photo a "
                        "line with album_id and user_id)")
    if not albums:
        raise DataError(f"{folder}: no albums")
    return albums
