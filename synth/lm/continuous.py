"""Continuous batching across prompts: every row of the batch has its own prompt, and a row that
finishes hands its slot to the next prompt at once.

``decoding.sample_texts`` samples many completions of ONE prompt (its cache is computed once and
copied).  Label-conditioned text and album captions have many prompts (a label pair, an album's
summary), and one batch per prompt left most batches tiny.  Here a batch of up to ``batch_size`` rows
(fewer where their cache would pass ``max_cache_gb``) runs over one KV cache whose rows are left-padded
to a common length: a new prompt is prefilled alone (or its earlier prefill copied: label-conditioned
rows repeat a few prompts), and the batch and the new rows are padded to one length and joined; the
attention mask hides the padding and each row keeps its own position ids, so a row's logits do not
depend on its neighbours (the test checks greedy completions against one-prompt-at-a-time decoding).
With guidance, a completion's conditional and unconditional rows run side by side.
"""

from __future__ import annotations

import copy
import time
from collections import Counter, OrderedDict
from typing import Callable

import torch

from .decoding import (
    FreeText,
    GrammarMatchers,
    RowTemperatures,
    SampleStats,
    cache_argument,
    prefill,
    returned_cache,
    row_temperature,
    sample_next,
)
from .heap import HeapReleaser, cache_bytes


def _trim_left(cache, n: int) -> None:
    """Drop the first ``n`` positions of every row (padding in every row once the rows that held
    them have left)."""
    if n <= 0:
        return
    for layer in cache.layers:
        layer.keys = layer.keys[:, :, n:]
        layer.values = layer.values[:, :, n:]


def _join_padded(caches: list, length: int) -> None:
    """Stack the rows of ``caches`` into ``caches[0]``, each left-padded with zeros to ``length``
    positions: one allocation per layer, written in place (padding, then concatenating, copied the
    whole cache twice, and a long-prompt batch's cache is gigabytes)."""
    for layers in zip(*(cache.layers for cache in caches), strict=True):
        for kind in ("keys", "values"):
            parts = [getattr(layer, kind) for layer in layers]
            first = parts[0]
            joined = first.new_zeros(sum(t.shape[0] for t in parts), first.shape[1], length, first.shape[3])
            row = 0
            for t in parts:
                joined[row:row + t.shape[0], :, length - t.shape[2]:] = t
                row += t.shape[0]
            setattr(layers[0], kind, joined)


def cache_bytes_per_position(model, token: int) -> int:
    """Bytes the KV cache holds per row and position (keys and values of every layer), measured on a
    one-token forward so that any architecture, dtype or head layout counts what it really holds."""
    device = next(model.parameters()).device
    return cache_bytes(returned_cache(model(input_ids=torch.tensor([[token]], device=device), use_cache=True)))


# the KV cache a continuous batch may hold before it stops admitting rows (a soft bound: rows admitted
# under it still grow by the tokens they generate).  The batch is left-padded to its longest row, so
# its cache is rows x longest row x bytes per position: SmolLM2-135M in fp32 holds 46 KB a position,
# and 100 rows of issue 16's ~250-token rewrite prompts held 1.0 GB on joining, 1.3 GB 70 steps later
MAX_CACHE_GB = 2.0


# distinct prompts whose prefill a batch keeps: label-conditioned runs repeat a few prompts over
# thousands of rows, and with short outputs the prompt's prefill was most of the time
PREFILLS_KEPT = 32


class _Batch:
    """The running rows: one cache, the padding mask, each row's next position and last logits."""

    def __init__(self, repeated: frozenset = frozenset()):
        self.cache = None
        self.mask: torch.Tensor | None = None  # (rows, length) 1 = a real token
        self.pos: torch.Tensor | None = None  # (rows,) position id of each row's next token
        self.logits: torch.Tensor | None = None  # (rows, vocab)
        self.rows: list[int] = []  # prompt index of each row
        self._prefilled: OrderedDict[tuple[int, ...], tuple] = OrderedDict()  # prompt -> (cache, logits)
        self._repeated = repeated  # the prompts worth keeping: those that come more than once

    def _prefill(self, model, prompt: torch.Tensor):
        """The prompt's KV cache and last logits: computed once per repeated prompt (the last
        PREFILLS_KEPT kept), then copied, so a row never shares tensors with another.  A prompt that
        comes once (an album's own summary) is not kept."""
        key = tuple(prompt.tolist())
        kept = self._prefilled.get(key)
        if kept is None:
            cache, logits = prefill(model, prompt[None])
            if key not in self._repeated:
                return cache, logits
            kept = self._prefilled[key] = (cache, logits)
            if len(self._prefilled) > PREFILLS_KEPT:
                self._prefilled.popitem(last=False)
        else:
            self._prefilled.move_to_end(key)
        return copy.deepcopy(kept[0]), kept[1].clone()

    def admit(self, model, prompts: list[tuple[int, torch.Tensor]]) -> None:
        """Add the rows ``(prompt index, prompt ids)``: each prompt is prefilled alone, then the batch
        and the new rows are left-padded to one length and joined in ONE concatenation per layer
        (joining row by row copied the whole cache once per admitted row: quadratic in the batch)."""
        if not prompts:
            return
        device = prompts[0][1].device
        new = [(index, prompt.shape[0], *self._prefill(model, prompt)) for index, prompt in prompts]
        current = self.length
        length = max([current] + [n for _, n, _, _ in new])
        caches, masks = [], []
        if self.cache is not None:
            caches.append(self.cache)
            masks.append(torch.cat([self.mask.new_zeros(len(self.rows), length - current), self.mask], dim=1))
        for _, n, cache, _ in new:
            caches.append(cache)
            masks.append(torch.cat([torch.zeros(1, length - n, dtype=torch.long, device=device),
                                    torch.ones(1, n, dtype=torch.long, device=device)], dim=1))
        _join_padded(caches, length)
        self.cache, self.mask = caches[0], torch.cat(masks)
        fresh_pos = torch.tensor([n for _, n, _, _ in new], device=device)
        fresh_logits = torch.cat([logits for *_, logits in new])
        self.pos = fresh_pos if self.pos is None else torch.cat([self.pos, fresh_pos])
        self.logits = fresh_logits if self.logits is None else torch.cat([self.logits, fresh_logits])
        self.rows.extend(index for index, *_ in new)

    @property
    def length(self) -> int:
        """Positions in the cache (every row is left-padded to it)."""
        return self.mask.shape[1] if self.mask is not None else 0

    def keep(self, keep: list[int]) -> None:
        if len(keep) == len(self.rows):
            return
        idx = torch.tensor(keep, device=self.mask.device)
        if keep:
            self.cache.batch_select_indices(idx)
            self.mask, self.pos, self.logits = self.mask[idx], self.pos[idx], self.logits[idx]
            self.rows = [self.rows[i] for i in keep]
            self._drop_unused_positions()
        else:
            self.cache, self.mask, self.pos, self.logits, self.rows = None, None, None, None, []

    def _drop_unused_positions(self) -> None:
        """The cache grows one position a step for as long as the batch runs; positions that are
        padding in every remaining row go, so its length stays the longest running row's, not the
        whole sampling's."""
        unused = int(self.mask.any(dim=0).long().argmax())
        if unused:
            _trim_left(self.cache, unused)
            self.mask = self.mask[:, unused:]

    def step(self, model, tokens: list[int]) -> None:
        ids = torch.tensor([[t] for t in tokens], device=self.mask.device)
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(tokens), 1)], dim=1)
        out = model(input_ids=ids, **cache_argument(model, self.cache), attention_mask=self.mask,
                    position_ids=self.pos[:, None], use_cache=True)
        self.pos = self.pos + 1
        self.logits = out.logits[:, -1].float()


def _guided(logits: torch.Tensor, guidance: float) -> torch.Tensor:
    """Rows (conditional, unconditional) side by side -> one row of guided log-probabilities each."""
    conditional, unconditional = logits[0::2].log_softmax(-1), logits[1::2].log_softmax(-1)
    return unconditional + guidance * (conditional - unconditional)


@torch.no_grad()
def sample_from_prompts(model, tokenizer, prompts: list[list[int]], *, grammar: str | list[str] | None = None,
                        batch_size: int = 16, max_record_tokens: int, temperature: float = 1.0, top_p: float = 1.0,
                        seed: int | None = None, progress: bool = True,
                        keep_unfinished: bool = False,
                        record_budgets: list[int] | None = None,
                        max_cache_gb: float | None = MAX_CACHE_GB,
                        guidance: float = 1.0, unconditional: list[list[int]] | None = None,
                        row_temperatures: Callable[[], RowTemperatures] | None = None
                        ) -> tuple[list[str | None], SampleStats]:
    """One completion per prompt, in the prompts' order (None where a row did not end within
    ``max_record_tokens`` and ``keep_unfinished`` is off: dropped and counted in ``hit_limit``).
    ``record_budgets``: each prompt's own ``max_record_tokens`` instead of the shared one.
    ``grammar``: one for every prompt, or a list with each prompt's own.
    ``max_cache_gb``: rows join while the batch's KV cache (rows x longest row) stays under it, so long
    prompts run in fewer rows than ``batch_size``; a row alone always runs; None: rows only.
    ``guidance`` (γ) with ``unconditional`` (each prompt's prompt without its condition, e.g. its labels):
    classifier-free guidance for LMs (Sanchez et al. 2023), log p = log p_u + γ (log p_c − log p_u), so
    γ > 1 follows the condition more closely; each completion then runs two rows (its prompt and its
    unconditional prompt, side by side, fed the same tokens) and ``batch_size`` counts completions.
    ``row_temperatures``: makes the ``RowTemperatures`` that give each completion's temperature from what
    it has written, in place of the one ``temperature``."""
    from tqdm.auto import tqdm

    n = len(prompts)
    stats = SampleStats(requested=n)
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    if isinstance(grammar, list) and len(grammar) != n:
        raise ValueError(f"grammar has {len(grammar)} entries for {n} prompts")
    guided = guidance != 1.0
    if guided and (unconditional is None or len(unconditional) != n):
        raise ValueError(f"guidance needs one unconditional prompt per prompt ({n}), got "
                         f"{'none' if unconditional is None else len(unconditional)}")
    rows_per = 2 if guided else 1  # a guided completion's second row (index n + i) runs its unconditional prompt
    every_prompt = prompts + unconditional if guided else prompts
    matchers = GrammarMatchers(tokenizer.llguidance(), grammar, batch_size) if grammar is not None and n else FreeText()
    eos = tokenizer.eos_token_id
    by_row = row_temperatures() if row_temperatures is not None else None
    if record_budgets is not None and len(record_budgets) != n:
        raise ValueError(f"record_budgets has {len(record_budgets)} entries for {n} prompts")
    # one more step than the record's tokens: the closing EOS
    budgets = [b + 1 for b in record_budgets] if record_budgets is not None else [max_record_tokens + 1] * n
    tokens: list[list[int]] = [[] for _ in range(n)]
    out: list[str | None] = [None] * n
    repeated = frozenset(p for p, count in Counter(map(tuple, every_prompt)).items() if count > 1)
    batch, pending = _Batch(repeated), iter(range(n))
    was_training = model.training
    model.eval()
    per_position = cache_bytes_per_position(model, prompts[0][0]) if n else 0
    cache_limit = max_cache_gb * 2**30 / per_position if max_cache_gb is not None and n else float("inf")  # row-positions
    heap = HeapReleaser(device)
    t0 = time.perf_counter()
    bar = tqdm(total=n, disable=not progress, desc="generating", unit="rec")
    try:
        waiting = next(pending, None)
        while waiting is not None or batch.rows:
            joining, length = [], batch.length
            while waiting is not None and (len(batch.rows) + len(joining)) // rows_per < batch_size:  # free slots
                rows = len(batch.rows) + len(joining) + rows_per
                length = max(length, *(len(every_prompt[waiting + k * n]) for k in range(rows_per)))
                if rows > rows_per and rows * length > cache_limit:  # waits for rows to leave
                    break
                joining += [(waiting + k * n, torch.tensor(every_prompt[waiting + k * n], device=device))
                            for k in range(rows_per)]  # side by side: pairs stay adjacent through keep()
                waiting = next(pending, None)
            batch.admit(model, joining)
            docs = batch.rows[::rows_per]
            logits = _guided(batch.logits, guidance) if guided else batch.logits
            matchers.mask_(logits, docs)
            nxt = sample_next(logits, temperature=row_temperature(temperature, by_row, docs), top_p=top_p,
                              generator=generator).tolist()
            keep, keep_tokens = [], []
            for i, (row, tok) in enumerate(zip(docs, nxt, strict=True)):
                if tok == eos:
                    if matchers.accepting(row):
                        out[row] = tokenizer.decode(tokens[row])
                        stats.tokens += len(tokens[row]) + 1
                    else:
                        stats.hit_limit += 1
                    matchers.release(row)
                    bar.update(1)
                    continue
                matchers.consume(row, tok)
                if by_row is not None:
                    by_row.consume(row, tok)
                tokens[row].append(tok)
                if len(tokens[row]) >= budgets[row]:  # the budget is spent without an EOS
                    if keep_unfinished:
                        out[row] = tokenizer.decode(tokens[row])
                        stats.tokens += len(tokens[row])
                        stats.extra["truncated"] = stats.extra.get("truncated", 0) + 1
                    else:
                        stats.hit_limit += 1
                    matchers.release(row)
                    bar.update(1)
                    continue
                keep += [rows_per * i + k for k in range(rows_per)]
                keep_tokens += [tok] * rows_per
            batch.keep(keep)
            if batch.rows:
                batch.step(model, keep_tokens)
                heap.copied_cache(len(batch.rows) * batch.length * per_position)
    finally:
        bar.close()
        model.train(was_training)
    stats.emitted = sum(t is not None for t in out)
    stats.seconds = time.perf_counter() - t0
    return out, stats
