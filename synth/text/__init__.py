"""Synthetic text corpora: documents of any length, optionally label-conditioned, with document- or
user-level privacy (every chunk of a unit is clipped as one)."""

from .corpus import load_corpus
from .generator import TextGenerator
from .spec import TextSpec

__all__ = ["TextGenerator", "TextSpec", "load_corpus"]
