"""A byte-level tokenizer: fixed, public vocabulary, so it reads nothing from private data."""

from __future__ import annotations


class ByteTokenizer:
    """ids 0-2 are pad, bos, eos; byte b is id b + 3."""

    pad_token_id, bos_token_id, eos_token_id = 0, 1, 2
    offset = 3
    vocab_size = 256 + offset

    def encode(self, text: str, *, bos: bool = True, eos: bool = True) -> list[int]:
        ids = [b + self.offset for b in text.encode("utf-8")]
        return ([self.bos_token_id] if bos else []) + ids + ([self.eos_token_id] if eos else [])

    def decode(self, ids) -> str:
        data = bytes(i - self.offset for i in ids if i >= self.offset)
        return data.decode("utf-8", errors="replace")
