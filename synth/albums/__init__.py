"""Photo albums: user -> album -> photo, generated hierarchically (summary, captions given the summary,
images).  This session: the album folder reader (``folder.py``); the generators are next
(docs/status.md)."""

from .folder import AlbumPhoto, AlbumRecord, load_album_folder

__all__ = ["AlbumPhoto", "AlbumRecord", "load_album_folder"]
