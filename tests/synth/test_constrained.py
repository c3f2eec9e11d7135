"""The constrained decoder: the sampler's law, every record parses, seeds reproduce, finished rows
leave the batch, records that cannot close are dropped and counted."""

from __future__ import annotations

import lark
import pytest
import torch

from synth.lm import ModelChoice
from synth.lm.decoding import sample_next, sample_texts
from synth.records.generator import RecordGenerator
from synth.spec import DatasetSpec


def test_sampler_follows_softmax_with_temperature_and_top_p():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.2, 0.0])).repeat(40_000, 1)  # last token masked (-inf)
    g = torch.Generator().manual_seed(0)
    freq = torch.bincount(sample_next(logits, temperature=1.0, top_p=1.0, generator=g), minlength=4) / 40_000
    torch.testing.assert_close(freq, torch.tensor([0.5, 0.3, 0.2, 0.0]), atol=0.01, rtol=0)
    # temperature 2: p ∝ sqrt(p)
    expect = torch.tensor([0.5, 0.3, 0.2]).sqrt()
    freq = torch.bincount(sample_next(logits, temperature=2.0, top_p=1.0, generator=g), minlength=4)[:3] / 40_000
    torch.testing.assert_close(freq, expect / expect.sum(), atol=0.01, rtol=0)
    # top-p 0.7 keeps {0.5, 0.3} (0.5 < 0.7), renormalised to 5/8, 3/8
    freq = torch.bincount(sample_next(logits, temperature=1.0, top_p=0.7, generator=g), minlength=4) / 40_000
    torch.testing.assert_close(freq, torch.tensor([0.625, 0.375, 0.0, 0.0]), atol=0.01, rtol=0)
    # top-p below the largest probability keeps the most likely token only; T = 0 is greedy
    assert sample_next(logits[:100], temperature=1.0, top_p=0.1, generator=g).eq(0).all()
    assert sample_next(logits[:100], temperature=0.0, top_p=1.0, generator=None).eq(0).all()


SPEC = DatasetSpec.from_dict({"serialization": "json", "columns": [
    {"name": "t", "max_chars": 12}, {"name": "r", "type": "integer", "min": 1, "max": 5},
    {"name": "c", "type": "categorical", "categories": ["yes", "no"]}]})


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    return RecordGenerator(SPEC, ModelChoice(model="scratch"))


def test_every_record_parses_and_a_seed_reproduces(generator):
    parser = lark.Lark(generator.grammar, parser="lalr")
    args = dict(batch_size=7, max_record_tokens=generator.max_record_tokens(), temperature=1.0, progress=False)
    texts, stats = sample_texts(generator.model, generator.tokenizer, generator.grammar, generator._prompt_ids(), 17,
                                seed=5, **args)
    assert len(texts) == stats.emitted == 17 and stats.hit_limit == 0
    for t in texts:
        parser.parse(t)
    assert stats.tokens == sum(len(generator.tokenizer.encode(t)) + 1 for t in texts)  # + EOS each
    again, _ = sample_texts(generator.model, generator.tokenizer, generator.grammar, generator._prompt_ids(), 17,
                            seed=5, **args)
    assert again == texts
    other, _ = sample_texts(generator.model, generator.tokenizer, generator.grammar, generator._prompt_ids(), 17,
                            seed=6, **args)
    assert other != texts


def test_records_that_cannot_close_are_dropped_and_counted(generator):
    # 10 tokens cannot hold '{"t": "x", "r": 1, "c": "no"}' (byte-level: one token per byte)
    texts, stats = sample_texts(generator.model, generator.tokenizer, generator.grammar, generator._prompt_ids(), 5,
                                batch_size=5, max_record_tokens=10, seed=0, progress=False)
    assert texts == [] and stats.hit_limit == 5 and stats.emitted == 0


def test_a_row_leaves_the_batch_when_it_finishes(generator, monkeypatch):
    """The model sees one row less after each EOS: batch sizes of the decoding steps never grow."""
    sizes = []
    forward = generator.model.forward

    def spy(*args, **kwargs):
        sizes.append(kwargs["input_ids"].shape[0])
        return forward(*args, **kwargs)

    monkeypatch.setattr(generator.model, "forward", spy)
    sample_texts(generator.model, generator.tokenizer, generator.grammar, generator._prompt_ids(), 6, batch_size=6,
                 max_record_tokens=generator.max_record_tokens(), seed=2, progress=False)
    assert sizes[0] == 1  # the shared prompt runs once
    steps = sizes[1:]
    assert steps[0] == 6 and all(a >= b for a, b in zip(steps[:-1], steps[1:], strict=True)) and steps[-1] < 6


def test_without_a_grammar_the_decoder_samples_free_text(generator):
    """The shared decoding loop with grammar=None: any token, rows end at EOS or the budget (counted)."""
    texts, stats = sample_texts(generator.model, generator.tokenizer, None, generator._prompt_ids(), 6,
                                batch_size=3, max_record_tokens=12, seed=4, progress=False)
    assert stats.emitted + stats.hit_limit == 6 and len(texts) == stats.emitted
    assert all(len(generator.tokenizer.encode(t)) <= 12 for t in texts)


def test_free_text_kept_when_cut_at_the_budget_is_counted(generator):
    texts, stats = sample_texts(generator.model, generator.tokenizer, None, generator._prompt_ids(), 5,
                                batch_size=5, max_record_tokens=3, seed=1, progress=False, keep_unfinished=True)
    assert len(texts) == 5 and stats.hit_limit == 0 and 0 <= stats.extra["truncated"] <= 5


def test_continuous_batching_under_a_grammar_parses_every_record_whatever_its_prompt(generator, monkeypatch):
    from synth.lm import continuous
    from synth.lm.continuous import sample_from_prompts

    parser = lark.Lark(generator.grammar, parser="lalr")
    base = generator._prompt_ids()
    prompts = [base[: len(base) - k - 1] + base[-1:] for k in range(5)] * 4  # five prompt lengths
    made = []
    matchers = continuous.GrammarMatchers

    def counting(*args):  # matchers are made per admitted row and released when it finishes
        m = matchers(*args)
        made.append(m)
        return m

    monkeypatch.setattr(continuous, "GrammarMatchers", counting)
    texts, stats = sample_from_prompts(generator.model, generator.tokenizer, prompts, grammar=generator.grammar,
                                       batch_size=6, max_record_tokens=generator.max_record_tokens(), seed=1,
                                       progress=False)
    assert len(texts) == 20 and stats.emitted + stats.hit_limit == 20 and stats.emitted >= 18
    for t in texts:
        if t is not None:
            parser.parse(t)
    assert made[0].bitmask.shape[0] == 6 and made[0].matchers == {}  # all released


def test_a_pinned_field_takes_exactly_its_serialised_value_in_both_styles(generator):
    from synth.lm.decoding import GrammarMatchers
    from synth.records.grammar import derive_grammar
    from synth.records.serialize import serialize, serialize_value

    tricky = {"t": 'say "hi"\\ \'ok\'\nünï 🙂\x7f\U000f5f5c', "r": 3, "c": None}
    for style in ("json", "dict"):
        spec = DatasetSpec.from_dict({"serialization": style, "columns": [
            {"name": "t", "max_chars": 40}, {"name": "r", "type": "integer", "min": 1, "max": 5},
            {"name": "c", "type": "categorical", "categories": ["yes", "no"], "nullable": True}]})
        text = serialize(tricky, spec)
        for name in spec.names:  # the record's text holds each field's value text after its key
            assert serialize_value(tricky, spec, name) in text
        grammar = derive_grammar(spec, pinned={c: serialize_value(tricky, spec, c) for c in ("t", "c")})
        matchers = GrammarMatchers(generator.tokenizer.llguidance(), grammar, 1)  # the decoder's lexer takes it
        for token in generator.tokenizer.encode(text):
            matchers.consume(0, token)
        assert matchers.accepting(0)
        pinned = lark.Lark(grammar, parser="lalr")
        pinned.parse(text)
        pinned.parse(serialize({**tricky, "r": 5}, spec))  # r is free
        with pytest.raises(lark.exceptions.LarkError):
            pinned.parse(serialize({**tricky, "t": "other"}, spec))
        with pytest.raises(lark.exceptions.LarkError):
            pinned.parse(serialize({**tricky, "c": "yes"}, spec))
    with pytest.raises(ValueError, match="not in the grammar"):
        derive_grammar(spec, pinned={"nope": "1"})


def test_field_variation_keeps_the_parent_but_the_fields_it_writes_anew(generator):
    parents = [{"t": f"parent {i}", "r": 1 + i % 5, "c": ["yes", "no"][i % 2]} for i in range(12)]
    children, kept = generator.vary(parents, batch_size=5, seed=3, fields_changed=1e-9)  # exactly one field anew
    assert kept == 0 and len(children) == len(parents)
    changed = [sum(child[c] != parent[c] for c in SPEC.names) for parent, child in zip(parents, children, strict=True)]
    assert max(changed) <= 1 and sum(changed) >= 6  # a scratch model rarely writes the parent's value back
    assert all(1 <= child["r"] <= 5 and child["c"] in ("yes", "no") and 1 <= len(child["t"]) <= 12
               for child in children)
    everything, _ = generator.vary(parents, batch_size=5, seed=3, fields_changed=1.0)
    assert sum(child["t"] != parent["t"] for parent, child in zip(parents, everything, strict=True)) >= 10
    again, _ = generator.vary(parents, batch_size=5, seed=3, fields_changed=1e-9)
    assert again == children  # the seed draws both the fields and the tokens


def test_field_variation_refuses_a_user_grammar():
    torch.manual_seed(0)
    from synth.records.grammar import derive_grammar

    gen = RecordGenerator(SPEC, ModelChoice(model="scratch"),
                          grammar=derive_grammar(SPEC).replace('r: "1" | "2" | ', "r: "))  # ratings 3-5 only
    with pytest.raises(ValueError, match="user grammar"):
        gen.vary([{"t": "a", "r": 1, "c": "no"}], mode="fields")
