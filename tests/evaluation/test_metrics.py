"""Each metric against a value worked out by hand on a tiny example."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evaluation import EvalSpec, ParsedRecord
from evaluation.metrics import attributes, embedding, knd, memorisation, utility
from evaluation.nodes import as_number, unquote, word_count
from evaluation.records import build_records, features_without, numeric_columns
from trainer.errors import ConfigError


def _rec(**nodes) -> ParsedRecord:
    return ParsedRecord(True, {k: list(v) for k, v in nodes.items()})


def test_unquote_reads_python_and_json_string_literals():
    assert unquote("'it\\'s'") == "it's"
    assert unquote('"say \\"hi\\""') == 'say "hi"'
    assert unquote("3.5") == "3.5" and as_number("'4'") == 4.0 and as_number("'x'") is None
    assert word_count("'two words'") == 2


def test_knd_pairs_similarities_and_distance():
    # repeated node: consecutive pairs, capped; two node types: zipped
    turns = _rec(turn=["'a'", "'b'", "'c'", "'d'"])
    assert knd.node_pairs(turns, "turn", "turn", 2) == [("a", "b"), ("b", "c")]
    assert knd.node_pairs(_rec(q=["'x'", "'y'"], a=["'z'"]), "q", "a", 10) == [("x", "z")]
    vectors = {"a": [1, 0], "b": [0, 1], "c": [0.6, 0.8], "d": [0.6, 0.8]}
    embed = lambda texts: np.array([vectors[t] for t in texts], float)  # noqa: E731
    sims = knd.similarities([turns, ParsedRecord(False)], "turn", "turn", embed, 10)
    np.testing.assert_allclose(sims, [0.0, 0.8, 1.0])  # a.b, b.c, c.d
    # W1 between {0.1, 0.5} and {0.3, 0.7}: every mass moves by 0.2
    assert knd.knd("q", "a", np.array([0.1, 0.5]), np.array([0.3, 0.7])).value == pytest.approx(0.2)
    empty = knd.knd("q", "a", np.array([0.1]), np.zeros(0))
    assert empty.value is None and "synthetic" in empty.reason


def test_attribute_extraction_and_match():
    real = [_rec(title=["'good one'"], score=["4.0"], kind=["'a'"]), _rec(title=["'ok'"], score=["2.0"], kind=["'b'"]),
            ParsedRecord(False)]
    syn = [_rec(title=["'fine'"], score=["3.0"], kind=["'a'"]), _rec(title=["'very good one'"], score=["'n/a'"],
                                                                      kind=["'a'"])]
    kw = dict(length_nodes=["title"], count_nodes=["title"], numeric_nodes=["score"], categorical_nodes=["kind"])
    ar = attributes.extract(real, ["good one 4.0 a", "ok 2.0 b", "broken"], **kw)
    sy = attributes.extract(syn, ["fine 3.0 a", "very good one n/a a"], **kw)
    assert ar["words"] == ("numeric", [4.0, 3.0])  # the unparseable record is left out
    assert ar["length/title"][1] == [2.0, 1.0] and sy["length/title"][1] == [1.0, 3.0]
    assert sy["value/score"][1] == [3.0]  # "n/a" is not a number: left out, not 0
    by_name = {m.name: m.value for m in attributes.attribute_match(ar, sy)}
    assert by_name["am/w1/length/title"] == pytest.approx(0.5)  # {1,2} vs {1,3}
    assert by_name["am/w1/count/title"] == 0.0
    assert by_name["am/w1/value/score"] == pytest.approx(1.0)  # {2,4} vs {3}: each half moves by 1
    assert by_name["am/tv/category/kind"] == pytest.approx(0.5)  # {a:.5, b:.5} vs {a:1}


def test_knn_precision_recall_on_points_on_a_line():
    real = np.array([[0.0], [1.0], [2.0], [3.0]])
    syn = np.array([[0.5], [10.0]])
    p, r = embedding.knn_precision_recall(real, syn, k=1)
    assert p.value == 0.5  # 0.5 lies within radius 1 of 0; 10 lies outside every real ball
    assert r.value == 1.0  # each synthetic ball has radius 9.5: every real point is inside the one around 0.5
    same_p, same_r = embedding.knn_precision_recall(real, real, k=3)
    assert same_p.value == same_r.value == 1.0
    assert embedding.knn_precision_recall(real, syn, k=3)[1].value is None  # 2 synthetic points cannot have k=3


def test_frechet_distance_in_one_dimension():
    # real: mean 1, var 2; synthetic: mean 3, var 8 -> (1-3)^2 + 2 + 8 - 2*sqrt(16) = 6
    fid = embedding.frechet_distance(np.array([[0.0], [2.0]]), np.array([[1.0], [5.0]]))
    assert fid.value == pytest.approx(6.0, abs=1e-4)
    x = np.random.default_rng(0).normal(size=(50, 4))
    assert embedding.frechet_distance(x, x).value == pytest.approx(0.0, abs=1e-9)


def test_memorisation_copies_and_nearest_similarity():
    assert memorisation.exact_copies(["a", "b"], ["a", "c", "a", "d"]).value == 0.5
    ref = np.array([[1.0, 0.0], [0.0, 1.0]])
    q = np.array([[0.6, 0.8], [1.0, 0.0]])
    np.testing.assert_allclose(memorisation.nearest_similarity(q, ref), [0.8, 1.0])


def test_tstr_learns_a_separable_label_and_refuses_one_class():
    rng = np.random.default_rng(0)
    def data(n):
        y = rng.integers(0, 2, n)
        return np.c_[y * 4.0 + rng.normal(size=n), rng.normal(size=n)], [str(v) for v in y]
    xr, yr = data(60)
    xt, yt = data(40)
    xs, ys = data(60)
    by_name = {m.name: m for m in utility.tstr(xr, yr, xt, yt, xs, ys, seed=0)}
    assert by_name["utility/tstr_accuracy"].value >= 0.95 and by_name["utility/trtr_accuracy"].value >= 0.95
    assert by_name["utility/majority_class_accuracy"].value == max(yt.count("0"), yt.count("1")) / 40
    one = {m.name: m for m in utility.tstr(xr, yr, xt, yt, xs, ["1"] * 60, seed=0)}
    assert one["utility/tstr_accuracy"].value is None and "fewer than 2" in one["utility/tstr_accuracy"].reason
    # label fidelity: the real classifier reads the synthetic rows' labels back, unless they were shuffled
    assert by_name["utility/label_fidelity"].value >= 0.95
    shuffled = {m.name: m for m in utility.tstr(xr, yr, xt, yt, xs, list(rng.permutation(ys)), seed=0)}
    assert 0.3 < shuffled["utility/label_fidelity"].value < 0.7


def test_rows_serialise_like_struct_bench_and_json():
    frame = pd.DataFrame({"title": ["It's fine", None], "score": ["4.0", "5"], "n": [1, 2]})
    assert numeric_columns(frame, ["title", "score", "n"]) == ["score", "n"]
    spec = EvalSpec(columns=["title", "score"])
    rs = build_records(frame, spec, ["score"], source="t.csv")
    assert rs.texts == ['{\'title\': "It\'s fine", \'score\': 4.0}', "{'title': None, 'score': 5}"]
    assert rs.contents == ["It's fine\n4.0", "\n5"]
    nan_spec = EvalSpec(columns=["title"], missing="nan")
    assert build_records(frame, nan_spec, [], source="t.csv").texts[1] == "{'title': nan}"
    js = EvalSpec(columns=["title", "score"], serialization="json")
    assert build_records(frame, js, ["score"], source="t.csv").texts[1] == '{"title": null, "score": 5}'
    # a synthetic value that is not a number, in a column the real data says is numeric, is quoted: the grammar rejects it
    bad = pd.DataFrame({"title": ["x"], "score": ["high"]})
    assert build_records(bad, spec, ["score"], source="s.csv").texts == ["{'title': 'x', 'score': 'high'}"]
    assert features_without(frame, EvalSpec(columns=["title", "score"]), "score") == ["It's fine", ""]
    with pytest.raises(Exception, match=r"s.csv: column\(s\) \['score'\] are not in the data; it has: \['title'\]"):
        build_records(pd.DataFrame({"title": ["x"]}), spec, [], source="s.csv")


def test_eval_spec_from_a_run_config_and_unknown_keys():
    run_config = {"spec": {"serialization": "dict", "columns": [{"name": "title"}, {"name": "review"}]},
                  "evaluation": {"key_nodes": [["title", "review"]], "label": "rating"}}
    spec = EvalSpec.from_dict(run_config)
    assert spec.columns == ["title", "review"] and spec.serialization == "dict"
    assert spec.length_nodes == ["title", "review"] and spec.missing == "None"
    with pytest.raises(ConfigError, match="did you mean 'key_nodes'"):
        EvalSpec.from_dict({"columns": ["a"], "key_node": [["a", "a"]]})
    with pytest.raises(ConfigError, match="either columns"):
        EvalSpec()
