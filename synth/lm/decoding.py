"""Batched sampling over the KV cache, under a grammar (every emitted record parses) or free.

Our own decoding loop over the model's KV cache (transformers ``DynamicCache``):

* the prompt is shared by the whole batch, so it is run once and its cache copied
  to every row;
* with a grammar, before each step each row's llguidance matcher writes the tokens its
  grammar state allows into a bitmask and every other token's logit becomes -inf; EOS is
  allowed only once the record is complete (without one, ``FreeText`` allows every token);
* a row that samples EOS leaves the batch at once (its cache rows are dropped), so
  the batch shrinks as records finish instead of padding to the longest one
  (Hugging Face ``generate`` keeps finished rows: ~2.4x the steps on Water).

The grammar bounds every field, so a record always closes within
``max_record_tokens``; a row that still hits the limit is dropped and counted.
"""

from __future__ import annotations

import functools
import inspect
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch

from .heap import HeapReleaser, cache_bytes


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
        extra = dict(self.extra)
        for key, value in other.extra.items():
            extra[key] = extra.get(key, 0) + value if isinstance(value, (int, float)) else value
        return SampleStats(self.requested + other.requested, self.emitted + other.emitted,
                           self.hit_limit + other.hit_limit, self.tokens + other.tokens,
                           self.seconds + other.seconds, extra)


class GrammarMatchers:
    """One llguidance matcher per row of a batch, and the bitmask of tokens each allows next.

    ``grammar`` is one lark grammar for every row, or a list of them, one per row (Private
    Evolution's record variation pins a different set of fields in each child); each distinct
    grammar is compiled once."""

    def __init__(self, ll_tokenizer, grammar: str | list[str], n_rows: int):
        import llguidance
        import llguidance.torch as llt

        self._grammar_of = (lambda row: grammar) if isinstance(grammar, str) else grammar.__getitem__
        compiled: dict[str, object] = {}
        for text in dict.fromkeys([grammar] if isinstance(grammar, str) else grammar):
            compiled[text] = llguidance.LLMatcher.grammar_from_lark(text)
            err = llguidance.LLMatcher(ll_tokenizer, compiled[text]).get_error()
            if err:
                raise ValueError(f"grammar rejected by llguidance: {err}")
        self._new = lambda row: llguidance.LLMatcher(ll_tokenizer, compiled[self._grammar_of(row)])
        self.matchers: dict[int, object] = {}  # made when a row first needs one, dropped by release()
        self.n_rows = n_rows  # rows decoded at once (the bitmask's height)
        self.bitmask = llt.allocate_token_bitmask(n_rows, ll_tokenizer.vocab_size)
        self._bits = torch.arange(32, dtype=torch.int32)

    def matcher(self, row: int):
        if row not in self.matchers:
            self.matchers[row] = self._new(row)
        return self.matchers[row]

    def release(self, row: int) -> None:
        self.matchers.pop(row, None)

    def mask_(self, logits: torch.Tensor, rows: list[int]) -> None:
        """Set to -inf, in place, every logit ``logits[i]`` that row ``rows[i]``'s grammar forbids."""
        import llguidance.torch as llt

        mask = self.bitmask[: len(rows)]
        for i, r in enumerate(rows):
            llt.fill_next_token_bitmask(self.matcher(r), mask, i)
        # unpack 32 tokens per int32 (llguidance's own kernel goes through torch.compile: seconds per shape)
        allowed = ((mask.unsqueeze(-1) >> self._bits) & 1).flatten(1).to(logits.device, torch.bool)
        width = min(allowed.shape[1], logits.shape[1])
        logits[:, :width].masked_fill_(~allowed[:, :width], float("-inf"))
        logits[:, width:] = float("-inf")  # padding ids past the tokenizer's vocabulary

    def consume(self, row: int, token: int) -> None:
        if not self.matcher(row).consume_token(token):
            raise RuntimeError(f"grammar matcher refused a masked token: {self.matcher(row).get_error()}")

    def accepting(self, row: int) -> bool:
        return self.matcher(row).is_accepting()


class RowTemperatures(Protocol):
    """Each row's sampling temperature for its next token, from what the row has written so far
    (e.g. a record's field: ``synth.records.field_temperature``).  One per batch; told every token a
    row keeps."""

    def temperatures(self, rows: list[int]) -> torch.Tensor:
        """(len(rows),) float temperatures, 0 for greedy."""

    def consume(self, row: int, token: int) -> None: ...


class FreeText:
    """The matcher interface without a grammar: every token allowed, any point may end."""

    def mask_(self, logits: torch.Tensor, rows: list[int]) -> None:
        pass

    def consume(self, row: int, token: int) -> None:
        pass

    def accepting(self, row: int) -> bool:
        return True

    def release(self, row: int) -> None:
        pass


def returned_cache(out):
    """The KV cache a forward pass returned: ``cache`` since transformers 5.x renamed it,
    ``past_key_values`` before (pyproject allows 4.56, where only the old name exists)."""
    return out["cache"] if "cache" in out else out.past_key_values


def cache_argument(model, cache) -> dict:
    """``{name: cache}`` for the model's forward, under the name its transformers version takes
    (``past_key_values`` warns from 5.2x and goes in 5.40)."""
    return {_cache_keyword(_model_class(model)): cache}


def _model_class(model) -> type:
    """The class whose forward() signature counts: the base model's under a peft wrapper."""
    return type(model.get_base_model() if hasattr(model, "get_base_model") else model)


@functools.cache
def _cache_keyword(model_class: type) -> str:
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def prefill(model, ids: torch.Tensor):
    """The KV cache and last-position logits (float, an owned copy) of one prompt ``ids`` (1, L).
    Only the last position's logits are computed where the model takes ``logits_to_keep``: the full
    (L, vocab) logits of a 250-token prompt over SmolLM2's 49k vocabulary are 48 MB and 7 GFLOP, and
    a view of their last row kept them all alive (100 admitted rows held 4.8 GB)."""
    out = model(input_ids=ids, use_cache=True, **({"logits_to_keep": 1} if _keeps_last_logits(_model_class(model)) else {}))
    return returned_cache(out), out.logits[:, -1].float().clone()


@functools.cache
def _keeps_last_logits(model_class: type) -> bool:
    return "logits_to_keep" in inspect.signature(model_class.forward).parameters


def sample_next(logits: torch.Tensor, *, temperature: float | torch.Tensor, top_p: float,
                generator: torch.Generator | None) -> torch.Tensor:
    """One token per row: greedy at temperature 0, else from softmax(logits / T) cut to the top-p mass.
    ``temperature``: one for every row, or a (rows,) tensor of each row's own (0 rows are greedy)."""
    if not isinstance(temperature, torch.Tensor):
        if temperature <= 0:
            return logits.argmax(-1)
        scaled = logits.float() / temperature
        greedy = None
    else:
        temperature = temperature.to(logits.device, torch.float32)
        greedy = temperature <= 0
        scaled = logits.float() / torch.where(greedy, 1.0, temperature)[:, None]
    probs = torch.softmax(scaled, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(-1) - sorted_probs  # mass of the strictly more likely tokens
        sorted_probs[before >= top_p] = 0.0  # the most likely token always stays (before = 0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    # inverse-CDF draw: the first token whose cumulative mass exceeds u ~ U(0, total).  Same law as
    # torch.multinomial, ~50x cheaper over a 49k vocabulary on CPU; a zero-mass (masked) token
    # never adds mass, so it is never the first to exceed u.
    cdf = probs.cumsum(-1)
    u = torch.rand((probs.shape[0], 1), generator=generator, device=probs.device) * cdf[:, -1:]
    drawn = torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp(max=probs.shape[-1] - 1)
    return drawn if greedy is None else torch.where(greedy, logits.argmax(-1), drawn)


def row_temperature(temperature: float, by_row: "RowTemperatures | None", rows: list[int]) -> float | torch.Tensor:
    """The temperature ``sample_next`` takes for ``rows``: the shared one, or each row's own."""
    return temperature if by_row is None else by_row.temperatures(rows)


@torch.no_grad()
def _decode_batch(model, matchers: GrammarMatchers | FreeText, prompt: torch.Tensor, rows: int, *, max_new_tokens: int,
                  eos: int, temperature: float, top_p: float, generator: torch.Generator | None,
                  timing: dict, keep_unfinished: bool = False,
                  by_row: RowTemperatures | None = None) -> tuple[list[list[int] | None], int]:
    """Token ids of each row's completion (None: did not end within ``max_new_tokens``, unless
    ``keep_unfinished``: then its tokens so far), and how many rows were cut at the budget."""
    cache, last = prefill(model, prompt[None])  # the shared prompt, once
    per_position = cache_bytes(cache) // prompt.shape[0]
    heap = HeapReleaser(prompt.device)
    cache.batch_repeat_interleave(rows)
    logits = last.expand(rows, -1).clone()
    active = list(range(rows))
    tokens: list[list[int]] = [[] for _ in range(rows)]
    finished: list[list[int] | None] = [None] * rows
    ended = [False] * rows  # sampled EOS (finished[row] stays None if its grammar was not complete)
    for _ in range(max_new_tokens):
        t0 = time.perf_counter()
        matchers.mask_(logits, active)
        timing["mask"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        nxt = sample_next(logits, temperature=row_temperature(temperature, by_row, active), top_p=top_p,
                          generator=generator).tolist()
        t1 = time.perf_counter()
        timing["sample"] += t1 - t0
        keep = []
        for i, (row, tok) in enumerate(zip(active, nxt, strict=True)):
            if tok == eos:
                finished[row] = tokens[row] if matchers.accepting(row) else None
                ended[row] = True
                continue
            matchers.consume(row, tok)
            if by_row is not None:
                by_row.consume(row, tok)
            tokens[row].append(tok)
            keep.append(i)
        timing["mask"] += time.perf_counter() - t1
        if not keep:
            break
        t0 = time.perf_counter()
        if len(keep) < len(active):  # finished rows leave the batch and the cache
            cache.batch_select_indices(torch.tensor(keep, device=prompt.device))
            active = [active[i] for i in keep]
        step_ids = torch.tensor([[nxt[i]] for i in keep], device=prompt.device)
        logits = model(input_ids=step_ids, **cache_argument(model, cache), use_cache=True).logits[:, -1].float()
        heap.copied_cache(len(active) * (prompt.shape[0] + len(tokens[active[0]])) * per_position)
        timing["model"] += time.perf_counter() - t0
    cut = [row for row in range(rows) if not ended[row]]
    if keep_unfinished:
        for row in cut:
            finished[row] = tokens[row]
    return finished, len(cut)


@torch.no_grad()
def sample_texts(
    model,
    tokenizer,
    grammar: str | None,
    prompt_ids: list[int],
    n: int,
    *,
    batch_size: int = 16,
    max_record_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int | None = None,
    progress: bool = True,
    keep_unfinished: bool = False,
    row_temperatures: Callable[[], RowTemperatures] | None = None,
) -> tuple[list[str], SampleStats]:
    """``n`` completions of ``prompt_ids``, constrained by ``grammar`` (a lark grammar, or None for free
    text); rows that do not end (EOS, grammar complete) within ``max_record_tokens`` are dropped and
    counted in ``hit_limit``; with ``keep_unfinished`` (free text) they are kept, cut at the budget,
    and counted in ``extra["truncated"]``.  ``row_temperatures``: makes each batch's ``RowTemperatures``
    (each row's temperature from what it has written), in place of the one ``temperature``."""
    from tqdm.auto import tqdm

    ll_tok = tokenizer.llguidance() if grammar is not None else None
    stats = SampleStats(requested=n)
    device = next(model.parameters()).device
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    prompt = torch.tensor(prompt_ids, device=device)
    timing = {"mask": 0.0, "sample": 0.0, "model": 0.0}
    texts: list[str] = []
    was_training = model.training
    model.eval()
    t0 = time.perf_counter()
    bar = tqdm(total=n, disable=not progress, desc="generating", unit="rec")
    try:
        while len(texts) + stats.hit_limit < n:
            b = min(batch_size, n - len(texts) - stats.hit_limit)
            matchers = GrammarMatchers(ll_tok, grammar, b) if grammar is not None else FreeText()
            # one step more than the record budget: the EOS that closes the longest record
            done, cut = _decode_batch(model, matchers, prompt, b, max_new_tokens=max_record_tokens + 1,
                                      eos=tokenizer.eos_token_id, temperature=temperature, top_p=top_p,
                                      generator=generator, timing=timing, keep_unfinished=keep_unfinished,
                                      by_row=row_temperatures() if row_temperatures is not None else None)
            if keep_unfinished:
                stats.extra["truncated"] = stats.extra.get("truncated", 0) + cut
            for ids in done:
                if ids is None:
                    stats.hit_limit += 1
                    continue
                stats.tokens += len(ids) + 1
                texts.append(tokenizer.decode(ids))
            bar.update(b)
    finally:
        bar.close()
        model.train(was_training)
    stats.emitted = len(texts)
    stats.seconds = time.perf_counter() - t0
    stats.extra.update({f"{k}_seconds": v for k, v in timing.items()})
    return texts, stats
