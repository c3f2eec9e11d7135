"""What every LM-based generator shares: model roads, tokenizers and the decoding loop.

* ``models``: the offline SmolLM2 default and small from-scratch configs;
* ``roads``: ModelChoice and the three roads (SmolLM2, a user's model by path or hub id, from
  scratch), with LoRA or full fine-tuning, and reloading what was trained;
* ``tokenizers``: one interface over a byte-level and a pretrained (public) tokenizer;
* ``decoding``: batched sampling over the KV cache, under a grammar (records) or free;
* ``text_spec`` / ``text_generator``: TextSpec and TextGenerator, a DP-trained LM over a corpus of
  documents of any length (chunked, one privacy unit per document or user), shared by the text and
  albums rooms.
"""

from .decoding import SampleStats, sample_next, sample_texts
from .roads import ModelChoice, build_model, load_trained
from .tokenizers import TextTokenizer

__all__ = ["ModelChoice", "SampleStats", "TextTokenizer", "build_model", "load_trained", "sample_next", "sample_texts"]
