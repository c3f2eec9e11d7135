"""Serialisation round trips and the derived grammar, on every row of the shared data."""

from __future__ import annotations

import lark
import pandas as pd
import pytest

from synth.loading import load_table, typed_frame
from synth.records.grammar import derive_grammar
from synth.records.serialize import RecordParseError, frame_to_texts, parse, serialize, texts_to_frame
from synth.spec import DatasetSpec

from .specs import ADULT, WATER, adult_spec, water_spec

pytestmark = pytest.mark.skipif(not WATER.exists(), reason="shared data not present")


def _same(a, b) -> bool:
    return (b is None and (a is None or a is pd.NA or a != a)) or a == b


@pytest.mark.parametrize("fmt", ["dict", "json"])
@pytest.mark.parametrize("path,make_spec", [(WATER, water_spec), (ADULT, adult_spec)], ids=["water", "adult"])
def test_round_trip_is_exact_for_every_row(path, make_spec, fmt):
    spec = make_spec(fmt)
    frame = typed_frame(load_table(path), spec)
    texts = frame_to_texts(frame, spec)
    for row, text in zip(frame.to_dict("records"), texts, strict=True):
        back = parse(text, spec)
        assert all(_same(row[k], back[k]) for k in spec.names), text
        assert serialize(back, spec) == text  # canonical: text -> record -> the same text
    again = texts_to_frame([parse(t, spec) for t in texts], spec)
    pd.testing.assert_frame_equal(again.reset_index(drop=True), frame[spec.names].reset_index(drop=True))


@pytest.mark.parametrize("fmt", ["dict", "json"])
@pytest.mark.parametrize("path,make_spec", [(WATER, water_spec), (ADULT, adult_spec)], ids=["water", "adult"])
def test_derived_grammar_accepts_every_row(path, make_spec, fmt):
    spec = make_spec(fmt)
    parser = lark.Lark(derive_grammar(spec), parser="lalr")
    for text in frame_to_texts(typed_frame(load_table(path), spec), spec):
        parser.parse(text)


def test_grammar_bounds_text_and_enforces_declared_values():
    spec = DatasetSpec.from_dict({"serialization": "json", "columns": [
        {"name": "t", "max_chars": 5},
        {"name": "c", "type": "categorical", "categories": ["a", "b"]},
        {"name": "n", "type": "integer", "min": 1, "max": 3},
        {"name": "f", "type": "float", "min": 1, "max": 5},
    ]})
    parser = lark.Lark(derive_grammar(spec), parser="lalr")
    parser.parse('{"t": "abcde", "c": "a", "n": 3, "f": 5.0}')
    parser.parse('{"t": "a", "c": "b", "n": 1, "f": 1.25}')
    for bad in ('{"t": "", "c": "b", "n": 1, "f": 1.25}',  # empty text would read back from CSV as missing
                '{"t": "abcdef", "c": "a", "n": 3, "f": 2.0}', '{"t": "x", "c": "z", "n": 3, "f": 2.0}',
                '{"t": "x", "c": "a", "n": 4, "f": 2.0}', '{"t": "x", "c": "a", "n": 3, "f": 5.5}',
                '{"t": "x", "c": "a", "n": 3, "f": 0.5}'):
        with pytest.raises(lark.exceptions.LarkError):
            parser.parse(bad)


def test_parse_rejects_wrong_keys_and_types():
    spec = water_spec("json")
    good = serialize({"product_name": "p", "overall_rating": 4.0, "rating": 5, "title": "t", "cleaned_review": None}, spec)
    parse(good, spec)
    with pytest.raises(RecordParseError, match="keys"):
        parse(good.replace('"title"', '"titel"'), spec)
    with pytest.raises(RecordParseError, match="integer"):
        parse(good.replace('"rating": 5', '"rating": "5"'), spec)
    with pytest.raises(RecordParseError, match="not a json record"):
        parse(good[:-1], spec)
