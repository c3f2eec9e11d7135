"""Evaluator slice: grammar loading/parsing, node extraction, CFG-PR and AM against hand-computed values."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest

from evaluation import GrammarError, MetricRecord, RecordGrammar
from evaluation.metrics.attributes import categorical_tv, mean_of, numeric_w1
from evaluation.metrics.structure import cfg_pass_rate

WATER = Path(__file__).resolve().parents[3] / "shared" / "data" / "water_dev.csv"

# A Struct-Bench-style grammar for the Water dict-literal serialisation, written as a user would.
WATER_GRAMMAR = r"""
start: "{" "'product_name': " product_name ", 'overall_rating': " overall_rating ", 'title': " title ", 'cleaned_review': " cleaned_review "}"
product_name: STRING
overall_rating: NUMBER
title: STRING
cleaned_review: STRING | "nan"
STRING: /'([^'\\\n]|\\.)*'/ | /"([^"\\\n]|\\.)*"/
NUMBER: /[0-9]+\.[0-9]+/
"""


def _water_texts(n=None):
    frame = pd.read_csv(WATER).head(n) if n else pd.read_csv(WATER)
    cols = ["product_name", "overall_rating", "title", "cleaned_review"]
    return [repr({c: (r[c] if c != "cleaned_review" or isinstance(r[c], str) else float("nan")) for c in cols})
            for r in frame.to_dict("records")]


def test_lalr_when_possible_earley_otherwise():
    assert RecordGrammar.from_text('start: "a" b\nb: "x" | "y"\n').algorithm == "lalr"
    collision = 'start: a | b\na: "x"\nb: "x"\n'  # reduce/reduce: not LALR(1)
    g = RecordGrammar.from_text(collision)
    assert g.algorithm == "earley" and g.parse("x").ok


def test_grammar_syntax_error_names_line_and_column(tmp_path):
    (tmp_path / "g.lark").write_text('start: "a"\nb: ) "x"\n')
    with pytest.raises(GrammarError, match=r"g.lark: .*line 2 column \d+"):
        RecordGrammar.from_file(tmp_path / "g.lark")


@pytest.mark.skipif(not WATER.exists(), reason="shared data not present")
def test_struct_bench_water_grammar_parses_every_row_and_extracts_nodes():
    grammar = RecordGrammar.from_text(WATER_GRAMMAR)
    assert grammar.algorithm == "lalr"
    texts = _water_texts()
    parsed = [grammar.parse(t) for t in texts]
    assert all(p.ok for p in parsed)
    first = parsed[0].nodes
    assert first["title"] == [repr(pd.read_csv(WATER).loc[0, "title"])]
    assert first["overall_rating"] == ["3.5"]


@pytest.mark.skipif(not WATER.exists(), reason="shared data not present")
def test_cfg_pr_drops_by_exactly_the_share_of_broken_records():
    grammar = RecordGrammar.from_text(WATER_GRAMMAR)
    texts = _water_texts(400)
    assert cfg_pass_rate([grammar.parse(t) for t in texts]).value == 1.0
    broken = list(texts)
    for i in random.Random(0).sample(range(400), 37):
        broken[i] = broken[i][:-1]  # drop the closing brace
    assert cfg_pass_rate([grammar.parse(t) for t in broken]).value == pytest.approx(1 - 37 / 400)


def test_undefined_metrics_are_none_with_reason_never_zero():
    assert cfg_pass_rate([]).value is None and cfg_pass_rate([]).reason
    r = numeric_w1("len", [], [1.0])
    assert r.value is None and "no real values" in r.reason
    assert mean_of("am", [r]).value is None
    with pytest.raises(ValueError):
        MetricRecord("x", None, "lower")


def test_attribute_match_hand_computed():
    assert numeric_w1("a", [0.0, 1.0], [1.0, 2.0]).value == pytest.approx(1.0)
    assert numeric_w1("a", [0.0, 0.0, 3.0], [0.0, 3.0, 3.0]).value == pytest.approx(1.0)
    assert categorical_tv("c", ["a", "a", "b", "b"], ["a", "a", "a", "a"]).value == pytest.approx(0.5)
    assert categorical_tv("c", ["a", "b"], ["b", "a"]).value == 0.0
    m = mean_of("am", [numeric_w1("a", [0.0], [2.0]), categorical_tv("c", ["a"], ["b"]), numeric_w1("z", [], [1.0])])
    assert m.value == pytest.approx((2.0 + 1.0) / 2)
