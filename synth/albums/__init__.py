"""Photo albums: user -> album -> photo, generated hierarchically (a summary, captions given the
summary, images from the captions), every stage DP at user level in one ledger.  Built so far: the
album folder reader, the bounds per level, AlbumGenerator (library API).  Next (docs/status.md):
the run config / CLI / export, the album evaluation, the hierarchy-vs-independent study."""

from .folder import AlbumPhoto, AlbumRecord, load_album_folder
from .generator import AlbumGenerator, bound_albums
from .spec import AlbumsSpec

__all__ = ["AlbumGenerator", "AlbumPhoto", "AlbumRecord", "AlbumsSpec", "bound_albums", "load_album_folder"]
