"""generate.field_temperature: each token is drawn at the temperature of the record field it writes.

The lexer is checked against record texts built piece by piece (so every field's byte span is known
independently), cut into tokens of random sizes; the sampler's per-row temperatures against its
one-temperature draws; and whole decodes: a field at temperature 0 is the model's greedy choice
given what comes before it, so records that agree before it agree on it too."""

from __future__ import annotations

import random

import pytest
import torch

from synth.lm import ModelChoice
from synth.lm.decoding import sample_next
from synth.records.field_temperature import FieldTemperatures
from synth.records.generator import RecordGenerator
from synth.records.serialize import serialize, serialize_value
from synth.run_config import build_config
from synth.spec import DatasetSpec
from trainer.errors import ConfigError

TRICKY = ['plain', 'a "quoted" word', "it's", 'back\\slash\\', '{"b": 1}, "c": ', "é ✓ 日本", "}", ", 'c': ",
          'both \' and "', "\\'", 'x' * 30]


def spec_of(style: str) -> DatasetSpec:
    return DatasetSpec.from_dict({"serialization": style, "columns": [
        {"name": "a", "max_chars": 40}, {"name": "n", "type": "float", "min": -5, "max": 5, "nullable": True},
        {"name": "b", "max_chars": 40, "nullable": True}, {"name": "k", "type": "integer", "min": -3, "max": 300}]})


def pieces(record: dict, spec: DatasetSpec) -> tuple[bytes, list[int]]:
    """The record's text and, for each field, the byte offset where the lexer hands over to it: just
    after the comma that ends the field before (the comma still counts as the earlier field's)."""
    text, starts = "{", [0]
    for i, name in enumerate(spec.names):
        if i:
            text += ","
            starts.append(len(text.encode()))
            text += " "
        text += serialize(record, spec, [name])[1:-1].split(": ", 1)[0] + ": " + serialize_value(record, spec, name)
    text += "}"
    assert text == serialize(record, spec)  # the pieces are the record's own canonical text
    return text.encode(), starts


@pytest.mark.parametrize("style", ["json", "dict"])
def test_the_lexer_knows_the_field_of_every_token_however_the_text_is_cut(style):
    spec, rng = spec_of(style), random.Random(0)
    for trial in range(300):
        record = {"a": rng.choice(TRICKY), "n": rng.choice([None, -4.25, 0.5, 3.0]), "b": rng.choice(TRICKY + [None]),
                  "k": rng.choice([-3, 0, 7, 300])}
        data, starts = pieces(record, spec)
        cuts = sorted(set(rng.sample(range(1, len(data)), k=min(len(data) - 1, rng.randint(1, 25)))) | {len(data)})
        chunks = [data[a:b] for a, b in zip([0, *cuts[:-1]], cuts, strict=True)]
        plan = FieldTemperatures(spec, chunks.__getitem__, 1.0, {"a": 0.1})
        row, offset = plan(), 0
        for token, chunk in enumerate(chunks):
            want = max(i for i, s in enumerate(starts) if s <= offset)
            assert row.field_of(0) == want, (trial, data, offset)
            row.consume(0, token)
            offset += len(chunk)
        assert row.field_of(0) is None  # closed: only EOS can follow


def test_each_row_is_drawn_at_its_fields_temperature():
    plan = FieldTemperatures(spec_of("json"), lambda t: b'{"a": "xy", "n": 1.5, "b": "z"'[t:t + 1], 0.8,
                             {"a": 0.1, "b": 0.0})
    rows = plan()
    for t in range(20):  # row 1 through '"n": 1.5': the comma that ends n is still n's to draw
        rows.consume(1, t)
    for t in range(21):  # row 2 through that comma: it writes b's key next
        rows.consume(2, t)
    assert rows.temperatures([0, 1, 2]).tolist() == pytest.approx([0.1, 0.8, 0.0])


def test_per_row_temperatures_draw_as_one_temperature_does_and_zero_is_greedy():
    logits = torch.randn(64, 50, generator=torch.Generator().manual_seed(1))
    shared = sample_next(logits, temperature=0.7, top_p=0.9, generator=torch.Generator().manual_seed(3))
    each = sample_next(logits, temperature=torch.full((64,), 0.7), top_p=0.9, generator=torch.Generator().manual_seed(3))
    assert torch.equal(shared, each)
    mixed = torch.tensor([0.0, 0.7] * 32)
    drawn = sample_next(logits, temperature=mixed, top_p=0.9, generator=torch.Generator().manual_seed(3))
    assert torch.equal(drawn[0::2], logits[0::2].argmax(-1))
    assert torch.equal(drawn[1::2], shared[1::2])  # the greedy rows take no other row's random number


def test_per_row_temperature_follows_the_softmax_law():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.2])).repeat(40_000, 1)
    temps = torch.tensor([1.0, 2.0]).repeat(20_000)
    drawn = sample_next(logits, temperature=temps, top_p=1.0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(torch.bincount(drawn[0::2], minlength=3) / 20_000, torch.tensor([0.5, 0.3, 0.2]),
                               atol=0.015, rtol=0)
    sqrt = torch.tensor([0.5, 0.3, 0.2]).sqrt()
    torch.testing.assert_close(torch.bincount(drawn[1::2], minlength=3) / 20_000, sqrt / sqrt.sum(), atol=0.015, rtol=0)


SPEC = DatasetSpec.from_dict({"serialization": "json", "columns": [
    {"name": "c", "type": "categorical", "categories": ["red", "green", "blue", "black", "white"]},
    {"name": "t", "max_chars": 8}]})


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    return RecordGenerator(SPEC, ModelChoice(model="scratch"))


def _agree_given(frame, before: str, field: str) -> bool:
    return bool((frame.groupby(before)[field].nunique() == 1).all())


def test_a_field_at_temperature_zero_is_greedy_and_the_others_still_vary(generator):
    kw = dict(batch_size=8, temperature=1.0, seed=0, progress=False)
    warm, _ = generator.sample(40, **kw)
    assert warm["c"].nunique() > 1 and not _agree_given(warm, "c", "t")  # one temperature: both vary
    cold_first, _ = generator.sample(40, field_temperature={"c": 0.0}, **kw)
    assert cold_first["c"].nunique() == 1 and cold_first["t"].nunique() > 1
    cold_last, _ = generator.sample(40, field_temperature={"t": 0.0}, **kw)
    assert cold_last["c"].nunique() > 1 and _agree_given(cold_last, "c", "t")


def test_variations_take_the_field_temperatures_too(generator):
    parents = generator.sample(30, batch_size=8, seed=1, progress=False)[0].to_dict("records")
    kw = dict(batch_size=8, temperature=1.0, seed=2, fields_changed=1.0)  # every field written anew
    children, _ = generator.vary(parents, field_temperature={"t": 0.0}, **kw)
    import pandas as pd

    frame = pd.DataFrame(children)
    assert frame["c"].nunique() > 1 and _agree_given(frame, "c", "t")
    warm = pd.DataFrame(generator.vary(parents, **kw)[0])
    assert not _agree_given(warm, "c", "t")


def test_the_config_refuses_fields_the_lm_does_not_write(tmp_path):
    base = {"data": {"path": "x.csv"}, "spec": {"columns": [{"name": "c", "type": "categorical", "categories": ["a"]},
                                                            {"name": "t", "max_chars": 8}]}}
    config = build_config({**base, "generate": {"field_temperature": {"t": 0.3}}})
    assert config.generate.field_temperature == {"t": 0.3}
    with pytest.raises(ConfigError, match="'tt' is not a column.*did you mean 't'"):
        build_config({**base, "generate": {"field_temperature": {"tt": 0.3}}})
    with pytest.raises(ConfigError, match="field_temperature.t must be a finite number >= 0"):
        build_config({**base, "generate": {"field_temperature": {"t": -1}}})
    with pytest.raises(ConfigError, match="columns.model = aim makes it"):
        build_config({**base, "columns": {"model": "aim"}, "generate": {"field_temperature": {"c": 0.3}}})
    conditioned = {**base, "spec": {**base["spec"], "conditioning": ["c"]}}
    with pytest.raises(ConfigError, match="conditioning column"):
        build_config({**conditioned, "generate": {"field_temperature": {"c": 0.3}}})
    text = {"data": {"path": "x.csv"}, "text": {"text": "body"}, "generate": {"field_temperature": {"body": 0.3}}}
    with pytest.raises(ConfigError, match="records runs"):
        build_config(text)
