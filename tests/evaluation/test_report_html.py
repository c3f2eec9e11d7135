"""The quality report a person reads: one overall score with its parts and a real-vs-real yardstick,
verdicts only where a yardstick exists, TSTR at the floor flagged, association heatmaps on one scale,
no word-count metric for a table without text, no mean across incomparable scales."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from evaluation.metrics.association import association_matrices, cramers_v
from evaluation.metrics.base import MetricRecord
from evaluation.verdicts import verdicts


def test_cramers_v_is_zero_for_independent_columns_and_one_for_a_function():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 4000)
    assert cramers_v(a, a) == pytest.approx(1.0)
    assert cramers_v(a, rng.integers(0, 5, 4000)) < 0.03
    # a mostly-zero number (capital gain) that tracks a label: its zero and non-zero rows must split
    label = rng.random(4000) < 0.1
    gain = np.where(label, rng.integers(1000, 9000, 4000), 0)
    frame = pd.DataFrame({"gain": gain, "rich": np.where(label, "yes", "no")})
    m = association_matrices(frame, frame, ["gain", "rich"], ["gain"])
    assert m["real"][0][1] > 0.9 and m["synthetic"] == m["real"]


def test_verdicts_use_the_reports_own_yardsticks():
    def r(name, value):
        return MetricRecord(name, value, "higher")

    found = {v.metric: v for v in verdicts([
        r("quality/sdmetrics_overall", 0.80), r("quality/real_holdout_sdmetrics_overall", 0.89),
        r("quality/column_shapes", 0.95), r("quality/real_holdout_column_shapes", 0.96),
        r("utility/majority_class_accuracy", 0.60), r("utility/trtr_accuracy", 0.80), r("utility/tstr_accuracy", 0.601),
        r("utility/label_fidelity", 0.55),
        r("utility/rating/majority_class_accuracy", 0.5), r("utility/rating/trtr_accuracy", 0.7),
        r("utility/rating/tstr_accuracy", 0.66),
        r("memorisation/nearest_similarity_mean", 0.99), r("memorisation/real_holdout_nearest_similarity_mean", 0.90),
        r("knn_precision", 0.5)])}
    assert found["quality/sdmetrics_overall"].verdict == "fair"  # 90 % of real vs real
    assert found["quality/column_shapes"].verdict == "good"
    assert found["utility/tstr_accuracy"].verdict == "poor" and "FLOOR" in found["utility/tstr_accuracy"].why
    assert "reads back 55%" in found["utility/tstr_accuracy"].why and "does not carry" in found["utility/tstr_accuracy"].why
    assert found["utility/rating/tstr_accuracy"].verdict == "good"  # 80 % of the gain over the floor
    assert found["memorisation/nearest_similarity_mean"].verdict == "poor"
    assert "knn_precision" not in found  # no yardstick, no verdict


@pytest.fixture(scope="module")
def table_report(tmp_path_factory):
    from evaluation import Encoder, EvalSpec, RecordGrammar, evaluate
    from synth.records.grammar import derive_grammar
    from synth.spec import DatasetSpec

    from ..synth.test_api import CENSUS

    real = pd.read_csv(CENSUS, dtype=str).head(300)
    rng = np.random.default_rng(0)
    synthetic = real.apply(lambda c: c.sample(frac=1, random_state=int(rng.integers(1 << 30))).to_numpy())
    columns = ["age", "sex", "education", "hours-per-week", "income"]
    spec = EvalSpec.from_dict({"spec": {"columns": columns, "serialization": "json"},
                               "evaluation": {"table_columns": columns, "label": "income"}})
    grammar = derive_grammar(DatasetSpec.from_dict({"columns": [
        {"name": c, "type": "integer" if c in ("age", "hours-per-week") else "text"} for c in columns]}))
    report = evaluate(real[columns], synthetic[columns], spec, RecordGrammar.from_text(grammar), Encoder())
    report.info["training"] = {"loss": [[1, 3.0], [2, 2.5]], "epsilon": [[1, 1.0], [2, 1.5]]}
    paths = report.save(tmp_path_factory.mktemp("report"))
    return report, paths


def test_the_table_report_leads_with_one_score_and_shows_pairs_on_one_scale(table_report):
    report, paths = table_report
    names = [m.name for m in report.metrics]
    assert "am/w1/words" not in names and "am/mean" not in names  # a table without text; no mixed-scale mean
    assert report.info["association"]["columns"] == ["age", "sex", "education", "hours-per-week", "income"]
    # columns shuffled independently: the real associations are gone from the synthetic table
    real_v, syn_v = np.array(report.info["association"]["real"]), np.array(report.info["association"]["synthetic"])
    assert real_v[1, 4] > 0.1 and syn_v[1, 4] < real_v[1, 4]
    page = paths["html"].read_text()
    for needle in ("Quality score", "column shapes", "Column pair associations", "association heatmaps",
                   "column shape scores", "training curves", "real vs real", "verdict"):
        assert needle in page
    assert report.value("quality/column_shapes") == pytest.approx(1.0)  # a shuffle keeps every column's shape
    assert set(report.info["quality"]["synthetic"]["columns"]) == {"age", "sex", "education", "hours-per-week", "income"}


@pytest.mark.skipif(shutil.which("chromium-headless-shell") is None and shutil.which("chromium") is None,
                    reason="no headless browser (apt-get install chromium-headless-shell)")
def test_the_report_renders_in_a_real_headless_browser(table_report, tmp_path):
    from PIL import Image

    _, paths = table_report
    browser = shutil.which("chromium-headless-shell") or shutil.which("chromium")
    shot = tmp_path / "report.png"
    subprocess.run([browser, "--no-sandbox", "--headless", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1280,2400", f"--screenshot={shot}", paths["html"].resolve().as_uri()],
                   check=True, capture_output=True, timeout=120)
    image = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert image.shape == (2400, 1280)
    assert image.std() > 20  # not a blank page: text, bars and heatmaps drawn


def test_a_column_the_data_lacks_is_a_message_naming_the_file_and_the_nearest_column():
    from evaluation import Encoder, EvalSpec, RecordGrammar, evaluate
    from evaluation.tables import DataError

    real = pd.DataFrame({"hours-per-week": ["40", "50"], "income": ["<=50K", ">50K"]})
    spec = EvalSpec.from_dict({"spec": {"columns": ["hours-per-week", "incomes"], "serialization": "json"}})
    with pytest.raises(DataError, match=r"real.csv: no column 'incomes' .*did you mean 'income'"):
        evaluate(real, real, spec, RecordGrammar.from_text('start: "x"\n'), Encoder(), sources=("real.csv", "syn.csv"))
