"""Continuous batching: rows with their own prompts share one left-padded KV cache, and a prompt that
joins mid-flight (shorter or longer than the rows already running) gets the logits it would get alone."""

from __future__ import annotations

import pytest
import torch

from synth.lm import ModelChoice
from synth.lm.continuous import _Batch, sample_from_prompts
from synth.lm.decoding import sample_texts
from synth.text import TextGenerator, TextSpec


@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(0)
    gen = TextGenerator(TextSpec(), ModelChoice(model="scratch"))
    gen.model.double().eval()
    return gen.model, gen.tokenizer


def _alone(model, prompt: list[int], continuation: list[int]) -> torch.Tensor:
    """Logits after prompt + continuation, run as one sequence without a cache."""
    with torch.no_grad():
        return model(input_ids=torch.tensor([prompt + continuation])).logits[0, -1].float()


def test_prompts_joining_mid_flight_get_the_logits_they_would_get_alone(lm):
    """Rows join alone or several at once (one shorter and one longer than the running rows: both the
    new rows and the batch are padded) and each row's logits stay those of its own sequence."""
    model, tok = lm
    first, short, long = tok.encode("a medium prompt"), tok.encode("hi"), tok.encode("a much longer prompt than that")
    tiny, longest = tok.encode("ok"), tok.encode("the longest prompt of all of these, by some way")
    batch = _Batch()
    with torch.no_grad():
        batch.admit(model, [(0, torch.tensor(first))])
        batch.step(model, [5])
        batch.step(model, [6])  # row 0 has run two tokens
        batch.admit(model, [(1, torch.tensor(short))])  # shorter than the batch: padded itself
        batch.step(model, [7, 8])
        batch.admit(model, [(2, torch.tensor(long))])  # longer than the batch: the batch is padded
        batch.step(model, [9, 10, 11])
        batch.admit(model, [(3, torch.tensor(tiny)), (4, torch.tensor(longest))])  # two at once
        batch.step(model, [14, 15, 16, 17, 18])
    assert batch.rows == [0, 1, 2, 3, 4]
    expected = [_alone(model, first, [5, 6, 7, 9, 14]), _alone(model, short, [8, 10, 15]),
                _alone(model, long, [11, 16]), _alone(model, tiny, [17]), _alone(model, longest, [18])]
    for row in range(5):
        torch.testing.assert_close(batch.logits[row], expected[row], rtol=1e-6, atol=1e-6)
    batch.keep([0, 2])  # rows 1, 3, 4 finished: dropped from the cache
    with torch.no_grad():
        batch.step(model, [12, 13])
    torch.testing.assert_close(batch.logits[1], _alone(model, long, [11, 16, 13]), rtol=1e-6, atol=1e-6)


def test_greedy_completions_match_one_prompt_at_a_time(lm):
    model, tok = lm
    prompts = [tok.encode(t) for t in ("one", "a second prompt", "3", "the fourth, longest prompt of all", "five!")]
    got, stats = sample_from_prompts(model, tok, prompts, batch_size=2, max_record_tokens=6, temperature=0,
                                     progress=False, keep_unfinished=True)
    want = [sample_texts(model, tok, None, p, 1, max_record_tokens=6, temperature=0, progress=False,
                         keep_unfinished=True)[0][0] for p in prompts]
    assert got == want and stats.requested == stats.emitted == 5


def test_a_repeated_prompt_is_prefilled_once_and_its_rows_decode_as_if_alone(lm):
    """Label-conditioned sampling repeats a few prompts: each distinct one is run through the model once,
    its cache copied into every row that uses it (a prompt said once is run and not kept); the
    completions are those of one prompt at a time."""
    model, tok = lm
    texts = ["rating = 'positive'", "rating = 'negative'", "a third, longer prompt here", "said only once"]
    order = (0, 1, 0, 3, 0, 2, 1, 0, 2, 1, 0)
    prompts = [tok.encode(texts[i]) for i in order]
    prefills = []
    hook = model.register_forward_pre_hook(
        lambda _m, args, kwargs: prefills.append(kwargs["input_ids"].shape[1]) if kwargs["input_ids"].shape[1] > 1
        else None, with_kwargs=True)
    try:
        got, _ = sample_from_prompts(model, tok, prompts, batch_size=3, max_record_tokens=5, temperature=0,
                                     progress=False, keep_unfinished=True)
    finally:
        hook.remove()
    assert sorted(prefills) == sorted(len(tok.encode(t)) for t in texts)  # one model call per distinct prompt
    want = {t: sample_texts(model, tok, None, tok.encode(t), 1, max_record_tokens=5, temperature=0, progress=False,
                            keep_unfinished=True)[0][0] for t in texts}
    assert got == [want[texts[i]] for i in order]


def test_rows_that_end_hand_their_slot_on_and_cut_rows_are_counted(lm):
    model, tok = lm
    offset = torch.zeros(model.lm_head.out_features, dtype=torch.float64)
    offset[tok.eos_token_id] = 4.0  # EOS about 1 in 6 a step: rows finish at different steps
    hook = model.lm_head.register_forward_hook(lambda module, args, out: out + offset)
    prompts = [tok.encode(f"prompt {i}") for i in range(12)]
    try:
        kept, stats = sample_from_prompts(model, tok, prompts, batch_size=4, max_record_tokens=5, temperature=1.0,
                                          seed=0, progress=False)
        lengths = {len(t) for t in kept if t is not None}
        assert stats.emitted + stats.hit_limit == 12 and stats.emitted >= 4 and stats.hit_limit >= 1
        assert len(lengths) >= 3  # rows finished at different steps
        assert stats.tokens <= 6 * stats.emitted  # each within the budget, + its EOS
        assert [t is None for t in kept].count(True) == stats.hit_limit
        again, _ = sample_from_prompts(model, tok, prompts, batch_size=4, max_record_tokens=5, temperature=1.0, seed=0,
                                       progress=False)
        assert again == kept  # a seed reproduces
    finally:
        hook.remove()


def test_each_prompt_can_have_its_own_token_budget(lm):
    model, tok = lm
    offset = torch.zeros(model.lm_head.out_features, dtype=torch.float64)
    offset[tok.eos_token_id] = -1e9  # no row ends by itself: each runs to its own budget
    hook = model.lm_head.register_forward_hook(lambda module, args, out: out + offset)
    prompts = [tok.encode(t) for t in ("one", "a second prompt", "3", "the fourth prompt")]
    budgets = [2, 6, 0, 4]
    try:
        got, stats = sample_from_prompts(model, tok, prompts, batch_size=2, max_record_tokens=99, temperature=0,
                                         progress=False, keep_unfinished=True, record_budgets=budgets)
        want = [sample_texts(model, tok, None, p, 1, max_record_tokens=b, temperature=0, progress=False,
                             keep_unfinished=True)[0][0] for p, b in zip(prompts, budgets, strict=True)]
    finally:
        hook.remove()
    assert got == want and stats.extra["truncated"] == 4
    assert stats.tokens == sum(b + 1 for b in budgets)  # a cut row keeps budget + 1 tokens, as with the shared one
    with pytest.raises(ValueError, match="3 entries for 4 prompts"):
        sample_from_prompts(model, tok, prompts, max_record_tokens=5, record_budgets=budgets[:3], progress=False)


def test_the_cache_keeps_only_the_positions_its_running_rows_use(lm):
    """A batch that runs long (a row joins every step, the oldest leaves) keeps a cache as long as its
    longest running row, not one position per step it has run, and each row's logits stay its own."""
    model, tok = lm
    prompts = [tok.encode(f"prompt {i}" + "!" * (i % 4)) for i in range(30)]
    batch = _Batch()
    with torch.no_grad():
        for i, prompt in enumerate(prompts):  # each row runs three steps
            batch.admit(model, [(i, torch.tensor(prompt))])
            batch.step(model, [5] * len(batch.rows))
            if len(batch.rows) == 3:
                batch.keep([1, 2])
    assert batch.rows == [28, 29]
    assert batch.mask.shape[1] <= max(map(len, prompts)) + 3  # 30 steps were run
    assert batch.mask.any(dim=0).all()  # no position is padding in every row
    torch.testing.assert_close(batch.logits[0], _alone(model, prompts[28], [5, 5]), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(batch.logits[1], _alone(model, prompts[29], [5]), rtol=1e-6, atol=1e-6)


def test_rows_join_only_while_the_cache_fits_its_memory_bound(lm, monkeypatch):
    """Long prompts run in fewer rows than batch_size: a row joins only while rows x longest row x
    bytes per position stays under max_cache_gb (a row alone always runs), and the completions are
    those of the unbounded batch."""
    from synth.lm import continuous

    model, tok = lm
    prompts = [tok.encode("a rather long prompt, " * (1 + i % 3)) for i in range(9)]
    per_position = continuous.cache_bytes_per_position(model, prompts[0][0])
    layers = model.config.num_hidden_layers
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    kv_heads = getattr(model.config, "num_key_value_heads", None) or model.config.num_attention_heads
    assert per_position == 2 * layers * kv_heads * head_dim * 8  # keys and values, fp64 in this fixture
    limit_positions = 2.5 * max(map(len, prompts))  # room for two of the longest prompts, not three
    seen = []
    admit = continuous._Batch.admit

    def watched(self, model, joining):
        admit(self, model, joining)
        if joining:
            seen.append((len(self.rows), self.length))

    monkeypatch.setattr(continuous._Batch, "admit", watched)
    common = dict(batch_size=8, max_record_tokens=4, temperature=0, progress=False)
    bounded, _ = sample_from_prompts(model, tok, prompts, max_cache_gb=limit_positions * per_position / 2**30, **common)
    assert max(rows * length for rows, length in seen if rows > 1) <= limit_positions
    assert max(rows for rows, _ in seen) < 8 and len(seen) > 1
    seen.clear()
    unbounded, _ = sample_from_prompts(model, tok, prompts, max_cache_gb=None, **common)
    assert max(rows for rows, _ in seen) == 8
    assert bounded == unbounded


def test_decoding_hands_freed_heap_back_after_each_budget_of_cache_copied(lm, monkeypatch):
    """Each decoding step copies the whole cache (it grows by concatenation) and glibc kept the freed
    copies (RSS 9.6 GB over a 1.3 GB cache): both loops trim the heap after every TRIM_AFTER_BYTES of
    cache copied, and nothing they sample changes."""
    from synth.lm import heap

    model, tok = lm
    trims = []
    monkeypatch.setattr(heap, "_malloc_trim", lambda: lambda pad: trims.append(pad))
    prompts = [tok.encode(t) for t in ("one", "a second prompt", "3", "the fourth, longest prompt of all")]
    common = dict(max_record_tokens=5, temperature=0, progress=False)
    monkeypatch.setattr(heap, "TRIM_AFTER_BYTES", 1 << 40)
    want, _ = sample_from_prompts(model, tok, prompts, batch_size=2, **common)
    want_one, _ = sample_texts(model, tok, None, prompts[3], 3, **common)
    assert trims == []
    monkeypatch.setattr(heap, "TRIM_AFTER_BYTES", 1)  # after every step
    got, _ = sample_from_prompts(model, tok, prompts, batch_size=2, **common)
    assert got == want and len(trims) >= 5  # a row runs up to 5 steps
    trims.clear()
    got_one, _ = sample_texts(model, tok, None, prompts[3], 3, **common)
    assert got_one == want_one and len(trims) >= 1


def test_guided_completions_follow_the_guided_log_probabilities_step_by_step(lm):
    """With guidance γ each completion runs beside its unconditional prompt, both fed its tokens; greedy
    decoding then picks argmax(log p_u + γ (log p_c − log p_u)) at every step: checked against each
    pair run alone without a cache.  γ = 1 is plain decoding."""
    import copy

    model, tok = copy.deepcopy(lm[0]), lm[1]
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # larger weights than the fixture's init: the prompt then sways the next token
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.3, generator=generator)
    prompts = [tok.encode(t) for t in ("label: good. ", "label: bad. a longer one", "label: so-so. ")]
    plain = tok.encode("write: ")
    unconditional = [plain] * len(prompts)
    common = dict(max_record_tokens=6, temperature=0, progress=False, keep_unfinished=True)
    got, _ = sample_from_prompts(model, tok, prompts, batch_size=2, guidance=3.0, unconditional=unconditional, **common)
    for prompt, text in zip(prompts, got, strict=True):
        ids = []
        for _ in range(7):
            c = _alone(model, prompt, ids).double().log_softmax(-1)
            u = _alone(model, plain, ids).double().log_softmax(-1)
            nxt = int((u + 3.0 * (c - u)).argmax())
            if nxt == tok.eos_token_id:
                break
            ids.append(nxt)
        assert text == tok.decode(ids[:7])  # 6 tokens and the EOS step: an unfinished row keeps 7
    unguided, _ = sample_from_prompts(model, tok, prompts, batch_size=2, **common)
    same, _ = sample_from_prompts(model, tok, prompts, batch_size=2, guidance=1.0, unconditional=unconditional, **common)
    assert same == unguided and got != unguided
    with pytest.raises(ValueError, match="unconditional prompt per prompt"):
        sample_from_prompts(model, tok, prompts, guidance=2.0, unconditional=unconditional[:1], **common)


def test_a_prefill_keeps_only_its_last_logits(lm):
    """A prompt's prefill returns the last position's logits in storage of their own: a view of the
    last row kept the whole (prompt x vocabulary) logits alive, 48 MB a row on SmolLM2, and a batch
    admitting 100 rows held 4.8 GB of them."""
    import copy

    from synth.lm.decoding import prefill

    model, tok = copy.deepcopy(lm[0]).float(), lm[1]  # fp32 logits: .float() is then no copy
    ids = torch.tensor([tok.encode("a prompt of a few dozen bytes, long enough to matter")])
    cache, logits = prefill(model, ids)
    vocab = model.config.vocab_size
    assert logits.shape == (1, vocab)
    assert logits.untyped_storage().nbytes() == vocab * logits.element_size()
    torch.testing.assert_close(logits[0], _alone(model, ids[0].tolist(), []), rtol=1e-5, atol=1e-5)
    assert cache.get_seq_length() == ids.shape[1]
