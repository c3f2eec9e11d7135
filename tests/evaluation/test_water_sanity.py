"""Sanity of the whole evaluator on the shared Water data with the real encoder (all-MiniLM-L6-v2).

D vs itself is perfect on every metric; a shuffled-columns corruption breaks the
title-review dependency (KND worse); the CLI writes JSON + HTML and states the card's ε.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation import Encoder, EvalSpec, RecordGrammar, evaluate, load_table
from synth.cli.main import main

from .test_grammar_and_metrics import WATER, WATER_GRAMMAR

pytestmark = pytest.mark.skipif(not WATER.exists(), reason="shared data not present")
N = 600  # rows: enough for stable distributions, cheap to embed
COLUMNS = ["product_name", "overall_rating", "title", "cleaned_review"]


@pytest.fixture(scope="module")
def encoder():
    return Encoder()


@pytest.fixture(scope="module")
def real():
    return load_table(WATER).head(N)


def _spec(**kw) -> EvalSpec:
    return EvalSpec(columns=COLUMNS, missing="nan", key_nodes=[["title", "cleaned_review"]],
                    numeric_nodes=["overall_rating"], label="rating", **kw)


def test_real_against_itself_is_perfect(real, encoder):
    report = evaluate(real, real, _spec(), RecordGrammar.from_text(WATER_GRAMMAR), encoder)
    assert report.info["real"]["parseable"] == N and report.info["grammar"]["algorithm"] == "lalr"
    assert report.value("cfg_pr") == 1.0
    assert report.value("knd/title~cleaned_review") == 0.0 and report.value("knd/mean") == 0.0
    am = [m for m in report.metrics if m.name.startswith("am/")]
    assert am and all(m.value == 0.0 for m in am)
    assert "am/mean" not in [m.name for m in am]  # W1 in words and W1 in rating points: no mean across scales
    assert report.value("knn_precision") == 1.0 and report.value("knn_recall") == 1.0
    assert report.value("fid") == pytest.approx(0.0, abs=1e-6)
    assert report.value("memorisation/exact_copy_share") == 1.0
    assert report.value("memorisation/nearest_similarity_mean") == pytest.approx(1.0, abs=1e-6)
    assert report.value("utility/tstr_accuracy") is not None


def test_shuffled_columns_score_worse_on_knd(real, encoder):
    shuffled = real.copy()
    shuffled["cleaned_review"] = shuffled["cleaned_review"].sample(frac=1, random_state=0).to_numpy()
    report = evaluate(real, shuffled, _spec(), RecordGrammar.from_text(WATER_GRAMMAR), encoder)
    assert report.value("cfg_pr") == 1.0  # still well formed ...
    assert report.value("knd/title~cleaned_review") > 0.005  # ... but titles no longer match their reviews
    assert report.value("am/w1/length/cleaned_review") == 0.0  # the review lengths are the same multiset
    assert report.value("knn_precision") < 1.0


def test_broken_records_lower_cfg_pr_by_their_share_and_are_left_out(real, encoder):
    syn = real.copy()
    syn.loc[syn.index[:60], "overall_rating"] = "high"  # written as a string: the grammar wants a number
    report = evaluate(real, syn, _spec(), RecordGrammar.from_text(WATER_GRAMMAR), encoder)
    assert report.value("cfg_pr") == pytest.approx(1 - 60 / N)
    assert report.metric("knn_precision").n_synthetic == N - 60
    assert report.metric("memorisation/exact_copy_share").n_synthetic == N  # copies are counted on every record


def test_embeddings_are_cached_in_memory_and_on_disk(tmp_path, encoder):
    texts = [f"record number {i}" for i in range(5)]
    before = encoder.texts_encoded
    first = encoder.encode(texts + texts[:2])
    assert encoder.texts_encoded - before == 5
    encoder.encode(texts)
    assert encoder.texts_encoded - before == 5
    cached = Encoder(cache_dir=tmp_path)
    vecs = cached.encode_dataset(texts)
    again = Encoder(cache_dir=tmp_path)
    assert (again.encode_dataset(texts) == vecs).all() and again.texts_encoded == 0
    assert abs(first[:5] - vecs).max() < 1e-5


def test_cli_writes_reports_states_the_card_and_refuses_export_folders(tmp_path, real, capsys):
    real.to_csv(tmp_path / "real.csv", index=False)
    export = tmp_path / "export"
    export.mkdir()
    real.sample(frac=1, random_state=1).head(200).to_csv(export / "synthetic.csv", index=False)
    (export / "dpsynth.json").write_text(json.dumps(
        {"privacy": {"epsilon": 4.0, "delta": 1e-5, "accountant": "prv", "privacy_unit": "example"}}))
    (tmp_path / "water.lark").write_text(WATER_GRAMMAR)
    (tmp_path / "eval.toml").write_text(
        '[evaluation]\ncolumns = ["product_name", "overall_rating", "title", "cleaned_review"]\nmissing = "nan"\n'
        'grammar = "water.lark"\nkey_nodes = [["title", "cleaned_review"]]\nlabel = "rating"\n')
    args = ["evaluate", "--real", str(tmp_path / "real.csv"), "--synthetic", str(export / "synthetic.csv"),
            "--spec", str(tmp_path / "eval.toml")]
    assert main([*args, "--out", str(export)]) == 2
    assert "export folder" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "(ε = 4, δ = " in out and "knd/title~cleaned_review" in out
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["info"]["privacy"]["epsilon"] == 4.0
    assert {m["name"]: m["value"] for m in report["metrics"]}["cfg_pr"] == 1.0
    page = (tmp_path / "rep" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(report["distributions"]) and "without differential privacy" in page
    assert not list(Path(export).glob("report*"))
