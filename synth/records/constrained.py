"""Grammar-constrained batched sampling: every emitted record parses.

Hugging Face ``generate`` does the batching, KV cache, temperature and top-p; a
logits processor feeds each row's sampled token to its llguidance matcher and
masks every token the grammar forbids.  EOS is allowed only once the record is
complete, and the grammar bounds every field, so a record always closes within
``max_record_tokens``.  A row that still hits the limit is dropped and counted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch


@dataclass
class SampleStats:
    requested: int = 0
    emitted: int = 0
    hit_limit: int = 0  # dropped: did not close within the token budget
    tokens: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def merge(self, other: "SampleStats") -> "SampleStats":
        """The totals of two sampling runs (e.g. one per conditioning value)."""
        return SampleStats(self.requested + other.requested, self.emitted + other.emitted,
                           self.hit_limit + other.hit_limit, self.tokens + other.tokens,
                           self.seconds + other.seconds, {**self.extra, **other.extra})


class GrammarMask:
    """A transformers LogitsProcessor: -inf on every token the row's grammar state forbids."""

    def __init__(self, ll_tokenizer, grammar: str, batch_size: int, prompt_len: int, eos_token_id: int):
        import llguidance

        compiled = llguidance.LLMatcher.grammar_from_lark(grammar)
        self.matchers = [llguidance.LLMatcher(ll_tokenizer, compiled) for _ in range(batch_size)]
        err = self.matchers[0].get_error()
        if err:
            raise ValueError(f"grammar rejected by llguidance: {err}")
        self.vocab = ll_tokenizer.vocab_size
        self.prompt_len = prompt_len
        self.eos = eos_token_id
        self.done = [False] * batch_size
        self._bits = torch.arange(32, dtype=torch.int32)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        import llguidance.torch as llt

        if input_ids.shape[1] > self.prompt_len:  # feed each row the token it just sampled
            for i, tok in enumerate(input_ids[:, -1].tolist()):
                if self.done[i]:
                    continue
                if tok == self.eos:
                    self.done[i] = True
                elif not self.matchers[i].consume_token(tok):
                    raise RuntimeError(f"grammar matcher refused a masked token: {self.matchers[i].get_error()}")
        bitmask = llt.allocate_token_bitmask(len(self.matchers), self.vocab)
        for i, m in enumerate(self.matchers):
            if not self.done[i]:
                llt.fill_next_token_bitmask(m, bitmask, i)
        allowed = ((bitmask.unsqueeze(-1) >> self._bits) & 1).flatten(1)[:, : self.vocab].bool()  # (B, V)
        for i, d in enumerate(self.done):
            if d:  # a finished row only pads (with EOS)
                allowed[i] = False
                allowed[i, self.eos] = True
        out = torch.full_like(scores, float("-inf"))
        width = min(self.vocab, scores.shape[1])
        out[:, :width] = torch.where(allowed[:, :width].to(scores.device), scores[:, :width], out[:, :width])
        return out

    def complete(self, i: int) -> bool:
        return self.done[i] and self.matchers[i].is_accepting()


@torch.no_grad()
def sample_texts(
    model,
    tokenizer,
    grammar: str,
    prompt_ids: list[int],
    n: int,
    *,
    batch_size: int = 16,
    max_record_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int | None = None,
    progress: bool = True,
) -> tuple[list[str], SampleStats]:
    """``n`` grammar-constrained completions of ``prompt_ids``; rows that do not close are dropped."""
    from tqdm.auto import tqdm
    from transformers import LogitsProcessorList

    ll_tok = tokenizer.llguidance()
    stats = SampleStats(requested=n)
    device = next(model.parameters()).device
    if seed is not None:
        torch.manual_seed(seed)
    texts: list[str] = []
    was_training = model.training
    model.eval()
    t0 = time.perf_counter()
    bar = tqdm(total=n, disable=not progress, desc="generating", unit="rec")
    try:
        while len(texts) + stats.hit_limit < n:
            b = min(batch_size, n - len(texts) - stats.hit_limit)
            ids = torch.tensor([prompt_ids] * b, device=device)
            mask = GrammarMask(ll_tok, grammar, b, ids.shape[1], tokenizer.eos_token_id)
            out = model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids),
                logits_processor=LogitsProcessorList([mask]),
                do_sample=temperature > 0, temperature=temperature if temperature > 0 else None,
                top_p=top_p if temperature > 0 else None, top_k=None,
                max_new_tokens=max_record_tokens + 1, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
            new = out[:, ids.shape[1]:]
            for i in range(b):
                row = new[i].tolist()
                if row and row[-1] == tokenizer.eos_token_id and not mask.done[i]:
                    mask.done[i] = True  # the final EOS is sampled after the last processor call
                if not mask.complete(i):
                    stats.hit_limit += 1
                    continue
                body = row[: row.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in row else row
                stats.tokens += len(body) + 1
                texts.append(tokenizer.decode(body))
            bar.update(b)
    finally:
        bar.close()
        model.train(was_training)
    stats.emitted = len(texts)
    stats.seconds = time.perf_counter() - t0
    return texts, stats
