"""One interface over the two tokenizer roads: byte-level (from scratch) and a pretrained HF tokenizer.

Both are public: the byte vocabulary is fixed, and a pretrained model's tokenizer
was built from public text.  Neither is ever fitted on private data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .byte_tokenizer import ByteTokenizer


@dataclass
class TextTokenizer:
    """encode/decode plus the ids generation needs, and the llguidance view of the vocabulary."""

    backend: Any
    kind: str  # "bytes" or "hf"
    name: str

    @classmethod
    def bytes(cls) -> "TextTokenizer":
        return cls(ByteTokenizer(), "bytes", "byte-level (256 bytes + pad/bos/eos)")

    @classmethod
    def hf(cls, tokenizer, name: str) -> "TextTokenizer":
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        return cls(tokenizer, "hf", name)

    @property
    def eos_token_id(self) -> int:
        return self.backend.eos_token_id

    @property
    def pad_token_id(self) -> int:
        return self.backend.pad_token_id

    @property
    def bos_token_id(self) -> int | None:
        return self.backend.bos_token_id

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` alone: no special tokens."""
        if self.kind == "bytes":
            return self.backend.encode(text, bos=False, eos=False)
        return self.backend.encode(text, add_special_tokens=False)

    def decode(self, ids) -> str:
        if self.kind == "bytes":
            return self.backend.decode(ids)
        return self.backend.decode(ids, skip_special_tokens=True)

    def token_bytes(self, token: int) -> bytes:
        """The exact bytes one token writes (a multi-byte character may be split across tokens, so
        ``decode`` of one token is not always its bytes)."""
        cache = self.__dict__.setdefault("_token_bytes", {})
        if token not in cache:
            if self.kind == "bytes":
                cache[token] = bytes([token - self.backend.offset]) if token >= self.backend.offset else b""
            else:
                cache[token] = self.llguidance().decode_bytes([token])
        return cache[token]

    def instruction_ids(self, system: str, task: str, *, plain_suffix: str = "\n") -> list[int]:
        """The ids of a public instruction prompt: the model's chat template when it has one (an
        instruct model then answers the task), else BOS + task + ``plain_suffix``."""
        backend = self.backend
        if self.kind == "hf" and getattr(backend, "chat_template", None):
            messages = [{"role": "system", "content": system}, {"role": "user", "content": task}]
            ids = backend.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            return list(ids["input_ids"] if hasattr(ids, "keys") else ids)  # BatchEncoding or list
        bos = [self.bos_token_id] if self.bos_token_id is not None else []
        return bos + self.encode(task + plain_suffix)

    def llguidance(self):
        """The llguidance view of this tokenizer (built once: ~1 s for a 49k vocabulary)."""
        cached = getattr(self, "_llguidance", None)
        if cached is not None:
            return cached
        import llguidance

        if self.kind == "hf":
            import llguidance.hf

            self._llguidance = llguidance.hf.from_tokenizer(self.backend)
        else:
            self._llguidance = llguidance.LLTokenizer(llguidance.TokenizerWrapper(_ByteVocab(self.backend)))
        return self._llguidance


class _ByteVocab:
    """The byte tokenizer as llguidance's TokenizerWrapper expects it."""

    def __init__(self, tok: ByteTokenizer):
        self.eos_token_id, self.bos_token_id = tok.eos_token_id, tok.bos_token_id
        self.tokens = [b"<pad>", b"<s>", b"</s>"] + [bytes([i]) for i in range(256)]
        self.special_token_ids = [tok.pad_token_id, tok.bos_token_id, tok.eos_token_id]
        self._offset = tok.offset

    def __call__(self, s):
        data = s if isinstance(s, bytes) else s.encode("utf-8")
        return [b + self._offset for b in data]
