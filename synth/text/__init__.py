"""Synthetic text corpora: documents of any length, optionally label-conditioned, with document- or
user-level privacy (every chunk of a unit is clipped as one)."""

from ..lm.text_generator import TextGenerator
from ..lm.text_spec import TextSpec
from .corpus import load_corpus

__all__ = ["TextGenerator", "TextSpec", "load_corpus"]
