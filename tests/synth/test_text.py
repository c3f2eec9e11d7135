"""Text corpora: a long document is one unit across all of its chunks; label-conditioned training and
sampling on the drug reviews; a folder of files; clear errors."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from synth.lm import ModelChoice
from synth.text import TextGenerator, TextSpec, load_corpus
from trainer import PrivacyLedger, TrainConfig
from trainer.errors import ConfigError, DPSynthError

from ..lm_units import clipped_sum as lm_clipped_sum
from .specs import SHARED

DRUGS = SHARED / "drugs_train.csv"
RATING = {"name": "rating", "type": "categorical", "categories": ["negative", "neutral", "positive"]}


def _scratch(spec: TextSpec) -> TextGenerator:
    torch.manual_seed(0)
    return TextGenerator(spec, ModelChoice(model="scratch"))


def test_a_5000_token_document_is_one_unit_across_its_chunks_and_micro_batches():
    """Adding the long document moves the clipped summed gradient by at most C, though its 11 chunks
    are 11 rows; the other documents run in another micro-batch."""
    spec = TextSpec(chunk_tokens=512, overlap_tokens=16, max_chunks_per_unit=16)
    gen = _scratch(spec)
    words = "the patient number is 0123456789 and the dose was doubled after the second week . ".split()
    long_doc = " ".join(words[i % len(words)] for i in range(900))  # ~5,000 bytes = tokens (byte-level)
    short = ["a short review.", "another one, a little longer than that.", "third."]
    frame = pd.DataFrame({"text": pd.array([long_doc, *short], dtype="string")})
    rows, units, report = gen.chunk(frame)
    n_long = units.count(0)
    assert len(gen.tokenizer.encode(long_doc)) >= 4900 and n_long >= 10 and report.longest_unit_chunks == n_long
    assert all(len(r["input_ids"]) <= 512 for r in rows)
    # every token of the document is scored exactly once across its chunks (+ EOS)
    assert sum(sum(r["loss_mask"]) for r, u in zip(rows, units, strict=True) if u == 0) == len(
        gen.tokenizer.encode(long_doc)) + 1

    model = gen.model.double()

    long_rows = [i for i, u in enumerate(units) if u == 0]
    other_rows = [i for i, u in enumerate(units) if u != 0]

    def clipped_sum(with_long: bool, clipping: str):  # the long document alone in one micro-batch
        return lm_clipped_sum(model, rows, units, ([long_rows] if with_long else []) + [other_rows], clipping)

    for clipping in ("flat", "per_layer"):
        moved = (clipped_sum(True, clipping) - clipped_sum(False, clipping)).norm().item()
        assert moved <= 1.0 + 1e-6
        if clipping == "flat":
            assert moved > 0.99  # the long document's 11 chunks were clipped as ONE unit, to norm C


@pytest.mark.skipif(not DRUGS.exists(), reason="shared data not present")
def test_label_conditioned_training_on_drug_reviews_pays_for_its_histogram(tmp_path):
    from synth.conditioning import dp_histogram

    spec = TextSpec(text="review", labels=[RATING], chunk_tokens=128, overlap_tokens=16, max_chunks_per_unit=4,
                    description="A patient's review of a drug.")
    frame = load_corpus(DRUGS, spec).head(120)
    gen = _scratch(spec)
    ledger = PrivacyLedger(delta=1e-4, privacy_unit="document")
    gen.conditioning = dp_histogram(frame, spec.as_dataset_spec(), 10.0)
    ledger.record("conditioning_histogram", noise_multiplier=10.0, sample_rate=1.0, steps=1, columns=["rating"])
    cfg = TrainConfig(target_epsilon=8.0, delta=1e-4, expected_batch_size=16, physical_batch_size=8, steps=2,
                      progress=False)
    result = gen.fit(frame, cfg, ledger=ledger)
    assert [e.stage for e in gen.ledger.events] == ["conditioning_histogram", "train"]
    assert gen.ledger.privacy_unit == "document" and result.epsilon <= 8.0
    assert gen.ledger.events[1].details["max_examples_per_user"] == 4
    report = gen.chunk_report
    assert report.documents == 120 and report.chunks > 120 and report.units_over_bound > 0  # reviews run long
    out, stats = gen.sample(6, batch_size=3, max_new_tokens=40, seed=2, progress=False)
    assert len(out) == 6 and set(out["rating"]) <= {"negative", "neutral", "positive"}
    assert stats.emitted == 6 and 0 <= stats.extra.get("truncated", 0) <= 6
    assert stats.tokens <= 6 * 41  # at most max_new_tokens each (+ the EOS of those that ended)
    # save / reload: the same samples from the same seed, ledger and label distribution kept
    gen.save_pretrained(tmp_path / "gen")
    again = TextGenerator.from_pretrained(tmp_path / "gen")
    assert again.ledger.to_dict() == gen.ledger.to_dict() and again.conditioning == gen.conditioning
    assert again.chunk_report == report
    assert list(again.sample(6, batch_size=3, max_new_tokens=40, seed=2, progress=False)[0]["review"]) == list(
        out["review"])


def test_a_folder_of_text_files_is_a_corpus_and_bad_input_names_the_file(tmp_path):
    (tmp_path / "a.txt").write_text("first document")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("# second\nwith two lines")
    (tmp_path / "skip.csv").write_text("not,a,document")
    frame = load_corpus(tmp_path, TextSpec())
    assert list(frame["text"]) == ["first document", "# second\nwith two lines"]
    (tmp_path / "bad.txt").write_bytes(b"ok \xff\xfe")
    with pytest.raises(DPSynthError, match=r"bad\.txt: not UTF-8"):
        load_corpus(tmp_path, TextSpec())
    with pytest.raises(DPSynthError, match="no label or user columns"):
        load_corpus(tmp_path, TextSpec(labels=[RATING]))
    table = tmp_path / "t.csv"
    table.write_text("review,rating\ngood,positive\n,negative\n")
    with pytest.raises(DPSynthError, match=r"row 2, column 'review': the value is missing"):
        load_corpus(table, TextSpec(text="review", labels=[RATING]))
    table.write_text("review,stars\ngood,5\n")
    with pytest.raises(DPSynthError, match=r"\['rating'\] named in the text spec are not in the data"):
        load_corpus(table, TextSpec(text="review", labels=[RATING]))


def test_text_spec_checks():
    from trainer.errors import ConfigError

    with pytest.raises(ConfigError, match="needs a public domain"):
        TextSpec(labels=[{"name": "condition", "type": "text"}])
    with pytest.raises(ConfigError, match="text.chunk_tokens must be an integer"):
        TextSpec(chunk_tokens=2.5)
    with pytest.raises(ConfigError, match="unknown text key 'chunk_token'; did you mean 'chunk_tokens'"):
        TextSpec.from_dict({"chunk_token": 3})
    assert math.isclose(TextSpec().as_dataset_spec().estimate_noise, 10.0)


def test_guidance_is_refused_where_there_is_nothing_to_guide_towards():
    from synth.run_config import build_config
    from trainer.errors import ConfigError

    base = {"data": {"path": "x.csv"}, "generate": {"guidance_scale": 2.0}}
    with pytest.raises(ConfigError, match="records runs do not take it"):
        build_config({**base, "spec": {"columns": [{"name": "a", "type": "text", "max_chars": 5}]}})
    with pytest.raises(ConfigError, match="declares neither"):
        build_config({**base, "text": {"text": "review"}})
    labelled = {**base, "text": {"text": "review", "labels": [RATING]}}
    assert build_config(labelled).generate.guidance_scale == 2.0
    with pytest.raises(ConfigError, match="guidance_scale must be a finite number >= 0"):
        build_config({**labelled, "generate": {"guidance_scale": -1.0}})
    with pytest.raises(ConfigError, match="max_cache_gb must be a finite number > 0"):
        build_config({**labelled, "generate": {"max_cache_gb": 0.0}})


@pytest.mark.skipif(not DRUGS.exists(), reason="shared data not present")
def test_dpsynth_run_with_a_text_config_exports_documents_with_their_card(tmp_path, capsys, monkeypatch):
    import json

    from synth.cli.main import main
    from synth.lm import text_generator

    bounds = []

    def spy(*args, max_cache_gb, **kwargs):  # the run's cache bound reaches the decoder
        bounds.append(max_cache_gb)
        return decode(*args, max_cache_gb=max_cache_gb, **kwargs)

    decode = text_generator.sample_from_prompts
    monkeypatch.setattr(text_generator, "sample_from_prompts", spy)

    pd.read_csv(DRUGS).head(60).to_csv(tmp_path / "reviews.csv", index=False)
    (tmp_path / "run.toml").write_text("""
[data]
path = "reviews.csv"
[text]
text = "review"
labels = [{ name = "rating", type = "categorical", categories = ["negative", "neutral", "positive"] }]
chunk_tokens = 96
max_chunks_per_unit = 3
[model]
model = "scratch"
[train]
target_epsilon = 6.0
steps = 2
expected_batch_size = 12
physical_batch_size = 6
progress = false
[generate]
n = 5
max_new_tokens = 24
guidance_scale = 2.0
max_cache_gb = 0.25
[output]
dir = "run"
format = "jsonl"
""")
    assert main(["run", str(tmp_path / "run.toml")]) == 0
    err = capsys.readouterr().err
    assert "units have more than 3 chunks" in err
    export = tmp_path / "run" / "export"
    card = json.loads((export / "dpsynth.json").read_text())
    docs = pd.read_json(export / "synthetic.jsonl", lines=True)
    assert len(docs) == card["rows"] == 5 and list(docs.columns) == ["rating", "review"]
    assert [s["stage"] for s in card["privacy"]["stages"]] == ["conditioning_histogram", "train"]
    assert card["privacy"]["privacy_unit"] == "document" and card["privacy"]["epsilon"] <= 6.0
    readme = (export / "README.md").read_text()
    assert "one **document**" in readme and "contributes at most 3 chunks per step" in readme
    assert "free text, at most 24 tokens a document" in readme
    assert card["generation"]["guidance_scale"] == 2.0 and bounds == [0.25]
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert report["chunks"]["documents"] == 60 and "chunks" not in card  # chunk counts are not DP: run folder only
    # scored against held-out reviews; never written into the export folder
    pd.read_csv(SHARED / "drugs_test.csv").head(40).to_csv(tmp_path / "heldout.csv", index=False)
    args = ["evaluate", "--real", str(tmp_path / "reviews.csv"), "--synthetic", str(export / "synthetic.jsonl"),
            "--spec", str(tmp_path / "run.toml")]
    assert main(args + ["--out", str(export)]) == 2  # refused: the export folder
    assert main(args + ["--out", str(tmp_path / "eval")]) == 2  # refused: no held-out set
    assert main(args + ["--heldout", str(tmp_path / "heldout.csv"), "--out", str(tmp_path / "eval")]) == 0
    scored = json.loads((tmp_path / "eval" / "report.json").read_text())
    names = {m["name"] for m in scored["metrics"]}
    assert {"mauve", "utility/rating/tstr_accuracy", "memorisation/8gram_overlap"} <= names


@pytest.mark.skipif(not DRUGS.exists(), reason="shared data not present")
def test_an_undeclared_label_list_is_estimated_with_dp_and_paid_for(tmp_path):
    import json

    from synth.domains import OTHER_CATEGORY
    from synth.run_config import build_config
    from synth.text import pipeline

    private = pd.read_csv(DRUGS).dropna(subset=["condition"])
    private.to_csv(tmp_path / "reviews.csv", index=False)
    config = build_config({
        "data": {"path": str(tmp_path / "reviews.csv")},
        "text": {"text": "review", "labels": [{"name": "condition", "type": "categorical", "estimate": True}],
                 "chunk_tokens": 160, "max_chunks_per_unit": 2, "estimate_noise": 3.0},
        "model": {"model": "scratch"},
        "train": {"target_epsilon": 8.0, "steps": 1, "expected_batch_size": 8, "physical_batch_size": 4,
                  "progress": False, "seed": 0, "insecure_seed": True},
        "generate": {"n": 6, "max_new_tokens": 16}, "output": {"dir": str(tmp_path / "run"), "format": "jsonl"}})
    result = pipeline.run(config, progress=False)
    card = result["card"]
    stages = [s["stage"] for s in card["privacy"]["stages"]]
    assert stages == ["domain:condition", "conditioning_histogram", "train"] and card["privacy"]["epsilon"] <= 8.0
    assert card["privacy"]["stages"][0]["extra_delta"] > 0  # partition selection's δ
    assert any(f.startswith("condition: category list estimated with DP") for f in card["estimated_with_dp"])
    assert not any(f.startswith("condition") for f in card["declared_public"])
    listed = json.loads((tmp_path / "run" / "domains.json").read_text())[0]["value"]
    counts = private["condition"].value_counts()
    # partition selection releases a category of count c with probability P(N(0, σ²) > τ - c): about
    # selection_delta for c = 1, so an unseeded run released one of the 106 conditions held by one or two
    # rows now and then (a few percent of runs by that estimate; seen once in CI): seeded here, and at most
    # 2 such are allowed
    assert "Birth Control" in listed and len(set(listed) - set(counts[counts >= 3].index)) <= 2
    assert OTHER_CATEGORY not in listed  # released by the estimate: it is added after, data-independently
    assert set(result["synthetic"]["condition"]) <= set(listed) | {OTHER_CATEGORY}
    # a review whose condition the list left out is trained on as OTHER_CATEGORY, not dropped; counted
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    rare = int((~private["condition"].isin(listed)).sum())
    assert rare > 0 and report["domain"]["rows_dropped"] == 0
    assert report["domain"]["outside_domain_by_column"] == {"condition": rare} and report["domain"]["rows_clipped"] == rare
    assert report["chunks"]["documents"] == len(private)
    histogram = result["card"]["conditioning"]
    assert OTHER_CATEGORY in json.dumps(histogram) and card["data_checks"]["other_category"] == OTHER_CATEGORY
    readme = (tmp_path / "run" / "export" / "README.md").read_text()
    assert f"`{OTHER_CATEGORY}` in this data stands for values too rare to release" in readme


def test_a_context_column_is_in_the_prompt_without_loss_and_given_per_document_at_generation():
    """Captions written given their album's summary: the summary is prompt (loss 0), the caption is
    scored; generation takes one context per document and keeps it beside the text."""
    spec = TextSpec(text="caption", context="summary", context_label="album summary", privacy_unit="user",
                    chunk_tokens=256, max_chunks_per_unit=2)
    gen = _scratch(spec)
    frame = pd.DataFrame({"caption": pd.array(["a dog on sand", "a crab by the sea", "a cow in a field"], dtype="string"),
                          "summary": pd.array(["a beach album starring a dog"] * 2 + ["a farm album"], dtype="string"),
                          "user": ["u1", "u1", "u2"]})
    rows, units, _ = gen.chunk(frame)
    assert units == ["u1", "u1", "u2"]
    summary_ids = gen.tokenizer.encode("a beach album starring a dog")
    ids, mask = rows[0]["input_ids"], rows[0]["loss_mask"]
    at = next(i for i in range(len(ids)) if ids[i:i + len(summary_ids)] == summary_ids)  # the summary is in the prompt
    assert not any(mask[at:at + len(summary_ids)])
    assert sum(mask) == len(gen.tokenizer.encode("a dog on sand")) + 1  # the caption (+ EOS) is all that is scored
    cfg = TrainConfig(target_epsilon=8.0, delta=1e-3, expected_batch_size=2, physical_batch_size=4, steps=1,
                      progress=False)
    gen.fit(frame, cfg, stage="caption_lm")
    assert [e.stage for e in gen.ledger.events] == ["caption_lm"] and gen.ledger.privacy_unit == "user"
    out, _ = gen.sample(3, contexts=["a farm album", "a beach album", "a farm album"], max_new_tokens=8, seed=0,
                        progress=False)
    assert list(out.columns) == ["summary", "caption"] and sorted(out["summary"]) == ["a beach album"] + ["a farm album"] * 2
    with pytest.raises(ConfigError, match="one context per document"):
        gen.sample(2, max_new_tokens=4, progress=False)


@pytest.mark.skipif(not DRUGS.exists(), reason="shared data not present")
def test_dpsynth_audit_on_a_text_config_trains_canary_documents_as_units_of_their_own(tmp_path, capsys):
    import json

    from synth.cli.main import main

    pd.read_csv(DRUGS).head(40).to_csv(tmp_path / "reviews.csv", index=False)
    (tmp_path / "run.toml").write_text("""
[data]
path = "reviews.csv"
[text]
text = "review"
labels = [{ name = "rating", type = "categorical", categories = ["negative", "neutral", "positive"] }]
chunk_tokens = 128
max_chunks_per_unit = 2
[model]
model = "scratch"
[train]
target_epsilon = 2.0
steps = 3
expected_batch_size = 16
physical_batch_size = 8
progress = false
[output]
dir = "run"
""")
    assert main(["audit", str(tmp_path / "run.toml"), "--canaries", "40", "--seed", "3"]) == 0
    result = json.loads((tmp_path / "run" / "audit.json").read_text())
    assert result["canaries"] == 40 and 0.0 <= result["auc"] <= 1.0
    assert result["epsilon_lower"] <= result["claimed_epsilon"]
    assert "AUC" in capsys.readouterr().out
    assert not (tmp_path / "run" / "export").exists()  # the audited model is never exported


def test_run_audit_makes_each_canary_a_unit_of_its_own_beside_grouped_private_units(monkeypatch):
    """Document level: private documents of two chunks each, canaries of one; the trainer sees the
    canaries as units distinct from every private one (a canary merged into a document would be
    clipped with it, and the audit would test another mechanism)."""
    import trainer
    from evaluation.audit import run_audit
    from tests.trainer.models import tiny_llama
    from trainer import TrainConfig

    seen = {}
    original = trainer.DPTrainer.__init__

    def spy(self, model, examples, config, **kw):
        seen.update(n_rows=len(examples), units=list(kw["units"]))
        return original(self, model, examples, config, **kw)

    monkeypatch.setattr(trainer.DPTrainer, "__init__", spy)
    private = [{"input_ids": [1, 2, 3, 4]} for _ in range(20)]
    units = [f"doc{i // 2}" for i in range(20)]
    canaries = [{"input_ids": [5, 6, 7, i % 90 + 8]} for i in range(30)]
    config = TrainConfig(target_epsilon=2.0, privacy_unit="document", max_examples_per_user=2, steps=2,
                         expected_batch_size=8, physical_batch_size=4, progress=False)
    result = run_audit(tiny_llama(dtype=torch.float32), private, canaries, config, units=units, seed=1)
    kept = seen["n_rows"] - 20
    assert seen["units"][:20] == units and len(set(seen["units"][20:])) == kept
    assert not set(seen["units"][20:]) & set(units)
    assert result.canaries == 30


@pytest.mark.skipif(not DRUGS.exists(), reason="shared data not present")
def test_a_seeded_run_builds_and_trains_the_same_model_twice(tmp_path):
    """``train.seed`` (insecure) makes the whole run reproducible, the from-scratch model's random
    init included, whatever the caller's torch state; unseeded runs take the caller's generator."""
    from synth.run_config import build_config
    from synth.text.pipeline import train

    pd.read_csv(DRUGS).head(24).to_csv(tmp_path / "reviews.csv", index=False)

    def weights(seed, name):
        raw = {"data": {"path": str(tmp_path / "reviews.csv")},
               "text": {"text": "review", "chunk_tokens": 96, "overlap_tokens": 16, "max_chunks_per_unit": 2},
               "model": {"model": "scratch"},
               "train": {"target_epsilon": 8.0, "steps": 1, "expected_batch_size": 8, "progress": False,
                         "seed": seed, "insecure_seed": seed is not None},
               "output": {"dir": str(tmp_path / name)}}
        generator, _ = train(build_config(raw), progress=False)
        return torch.cat([p.detach().flatten() for p in generator.model.parameters()])

    torch.manual_seed(0)  # the caller's global state must not decide the init ...
    first = weights(3, "a")
    torch.manual_seed(1)
    assert torch.equal(first, weights(3, "b"))
    assert not torch.equal(first, weights(4, "c"))
    assert not torch.equal(weights(None, "d"), weights(None, "e"))
