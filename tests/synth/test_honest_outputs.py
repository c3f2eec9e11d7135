"""Issue 10, items 10-19: the run refuses bad input before any work, and nothing is lost uncounted.

The bad-input cases are one table: input -> exit code, message fragment, nothing left behind.
"""

from __future__ import annotations

import json
import os
import re

import lark
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluation.tables import load_table
from synth.card import render_card
from synth.cli.main import main
from synth.export import write_table
from synth.records.grammar import derive_grammar, int_range_regex
from synth.spec import DatasetSpec
from synth.validation import check_domain
from trainer.errors import ConfigError
from trainer.io import FolderInUseError, folder_lock

ROWS = "title,rating,kind\n" + "fine bottle,4,a\nleaks,1,b\ngood value,5,a\nnice,3,b\n" * 10

BASE = {
    "data": {"path": "data.csv"},
    "spec": {"serialization": "json", "columns": [
        {"name": "title", "max_chars": 20}, {"name": "rating", "type": "integer", "min": 1, "max": 5},
        {"name": "kind", "type": "categorical", "categories": ["a", "b"]}]},
    "model": {"model": "scratch"},
    "train": {"target_epsilon": 8.0, "steps": 1, "expected_batch_size": 8, "physical_batch_size": 8,
              "progress": False},
    "generate": {"n": 4, "batch_size": 4},
    "output": {"dir": "run", "format": "jsonl"},
}


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    return repr(value)


def _write_config(folder, raw) -> str:
    lines = []
    for section, values in raw.items():
        lines.append(f"[{section}]")
        lines += [f"{json.dumps(k)} = {_toml(v)}" for k, v in values.items()]
    path = folder / "run.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _with(section, key, value):
    raw = json.loads(json.dumps(BASE))
    raw[section][key] = value
    return raw


def _spec_columns(columns):
    raw = json.loads(json.dumps(BASE))
    raw["spec"]["columns"] = columns
    return raw


BAD_INPUTS = [
    # (case, config, data file text or None (the default rows), message fragment)
    ("steps 2.5", _with("train", "steps", 2.5), None, "train.steps must be an integer"),
    ("steps text", _with("train", "steps", "ten"), None, "train.steps must be an integer"),
    ("target ε inf", _with("train", "target_epsilon", float("inf")), None, "target_epsilon must be a number in"),
    ("δ 1e-300", _with("train", "delta", 1e-300), None, "delta must be in"),
    ("σ = 0", {**_with("train", "noise_multiplier", 0.0), "train": {
        k: v for k, v in {**BASE["train"], "noise_multiplier": 0.0}.items() if k != "target_epsilon"}},
     None, "non_private"),
    ("seed without switch", _with("train", "seed", 3), None, "insecure_seed"),
    ("boolean 'no'", _with("data", "skip_unparseable", "no"), None, "data.skip_unparseable must be true or false"),
    ("format", _with("output", "format", "xlsx"), None, "output.format must be one of"),
    ("batch 0", _with("generate", "batch_size", 0), None, "generate.batch_size must be >= 1"),
    ("top_p 0", _with("generate", "top_p", 0.0), None, "generate.top_p must be in (0, 1]"),
    ("n 0", _with("generate", "n", 0), None, "generate.n must be >= 1"),
    ("scratch size", _with("model", "scratch_size", "huge"), None, "model.scratch_size must be one of"),
    ("missing model folder", _with("model", "model", "./no/such/model"), None, "neither a local folder"),
    ("categorical, no list", _spec_columns([{"name": "title", "max_chars": 20},
                                            {"name": "kind", "type": "categorical"}]), None,
     "declares no categories"),
    ("rating of 9", None, ROWS + "bad,9,a\n", "column 'rating' (finite, in [1.0, 5.0]): 1 rows"),
    ("category not in list", None, ROWS + "bad,2,zz\n", "column 'kind'"),
    ("inf", _spec_columns([{"name": "title", "max_chars": 20}, {"name": "rating", "type": "float"}]),
     ROWS + "bad,inf,a\n", "column 'rating'"),
    ("50 kB cell", None, ROWS + "x" * 50_000 + ",2,a\n", "(50000 characters)"),
    ("data is a folder", _with("data", "path", "."), None, "is a folder"),
    ("parquet named csv", None, "PARQUET", "is a Parquet file but is named '.csv'"),
    ("output under a file", _with("output", "dir", "data.csv/run"), None, "cannot write there"),
]


@pytest.mark.parametrize("case, raw, data, fragment", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_refused_before_training_and_leaves_nothing(tmp_path, capsys, case, raw, data, fragment):
    if data == "PARQUET":
        pd.read_csv(pd.io.common.StringIO(ROWS)).to_parquet(tmp_path / "data.csv")
    else:
        (tmp_path / "data.csv").write_text(data if data is not None else ROWS)
    config = _write_config(tmp_path, raw if raw is not None else BASE)
    assert main(["run", config]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err
    run = tmp_path / "run"
    assert not any((run / name).exists() for name in ("checkpoints", "generator", "export"))


def test_a_run_folder_in_use_is_refused(tmp_path, capsys):
    (tmp_path / "data.csv").write_text(ROWS)
    config = _write_config(tmp_path, BASE)
    with folder_lock(tmp_path / "run"):
        assert main(["run", config]) == 2
    assert "is in use by another dpsynth run" in capsys.readouterr().err
    with folder_lock(tmp_path / "x"), pytest.raises(FolderInUseError, match=f"pid {os.getpid()}"):
        with folder_lock(tmp_path / "x"):
            pass


def test_paths_resolve_against_the_config_folder_and_the_card_is_honest(tmp_path, monkeypatch, capsys):
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "data.csv").write_text(ROWS.replace("\n", ",x\n").replace("title,rating,kind,x", "title,rating,kind,notes"))
    (tmp_path / "data.csv").write_text("title,rating,kind\nwrong file,1,a\n")  # must not be read
    config = _write_config(sub, BASE)
    monkeypatch.chdir(tmp_path)
    assert main(["run", "sub/run.toml"]) == 0
    captured = capsys.readouterr()
    assert "columns ['notes'] are not in the spec" in captured.err
    card = json.loads((sub / "run" / "export" / "dpsynth.json").read_text())
    assert card["spec"]["columns_not_synthesised"] == ["notes"]
    assert json.loads((sub / "run" / "data_report.json").read_text())["rows_read"] == 40
    readme = (sub / "run" / "export" / "README.md").read_text()
    assert "`notes`" in readme and "rejected by the spec after decoding: 0" in readme
    assert "training loss" in readme  # the progress display is named as not DP
    frame = pd.read_json(sub / "run" / "export" / "synthetic.jsonl", lines=True)
    assert len(frame) == card["rows"] and set(frame["kind"]) <= {"a", "b"}
    # `train --output.overwrite` starts afresh instead of resuming
    stale = sub / "run" / "checkpoints" / "checkpoint-99"
    stale.mkdir(parents=True)
    assert main(["train", config, "--output.overwrite", "true"]) == 0
    assert not stale.exists()
    del config


def test_domain_check_drops_or_clips_and_counts():
    spec = DatasetSpec.from_dict({"columns": [{"name": "t", "max_chars": 5},
                                              {"name": "r", "type": "integer", "min": 1, "max": 5}]})
    frame = pd.DataFrame({"t": ["ok", "much too long", "fine"], "r": pd.array([3, 9, 1], dtype="Int64")})
    frame["t"] = frame["t"].astype("string")
    with pytest.raises(Exception, match=r"column 't' \(at most 5 characters\): 1 rows"):
        check_domain(frame, spec, policy="error")
    dropped, report = check_domain(frame, spec, policy="drop")
    assert list(dropped["t"]) == ["ok", "fine"] and report.dropped == 1 and report.invalid == {"t": 1, "r": 1}
    clipped, report = check_domain(frame, spec, policy="clip")
    assert list(clipped["t"]) == ["ok", "much ", "fine"] and list(clipped["r"]) == [3, 5, 1]
    assert report.clipped == 1 and report.dropped == 0


def test_skip_unparseable_that_drops_everything_is_an_error(tmp_path, capsys):
    (tmp_path / "data.csv").write_text(ROWS)
    (tmp_path / "g.lark").write_text('start: "{" "never" "}"\n')
    raw = json.loads(json.dumps(BASE))
    raw["spec"]["grammar"] = "g.lark"
    raw["data"]["skip_unparseable"] = True
    assert main(["run", _write_config(tmp_path, raw)]) == 2
    assert "every one of the 40 private rows" in capsys.readouterr().err


# 14 ---------------------------------------------------------- wide ranges
@settings(max_examples=300, deadline=None)
@given(lo=st.integers(-10**12, 10**12), width=st.integers(0, 10**13), probe=st.integers(-10**14, 10**14))
def test_integer_range_regex_is_exact(lo, width, probe):
    hi = lo + width
    pattern = re.compile(int_range_regex(lo, hi))
    for v in (lo, hi, lo - 1, hi + 1, probe):
        assert bool(pattern.fullmatch(str(v))) == (lo <= v <= hi)


def test_wide_integer_range_is_enforced_by_the_grammar():
    spec = DatasetSpec.from_dict({"columns": [{"name": "fnlwgt", "type": "integer", "min": 10000, "max": 1500000}]})
    parser = lark.Lark(derive_grammar(spec), parser="lalr")
    for v in (10000, 413373, 1500000):
        parser.parse(json.dumps({"fnlwgt": v}))
    for v in (9999, 1500001, 99999999, -5):
        with pytest.raises(lark.exceptions.LarkError):
            parser.parse(json.dumps({"fnlwgt": v}))


# 16 ------------------------------------------------------- CSV round trip
@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1), min_size=1, max_size=8))
def test_every_csv_export_reloads_to_its_row_count(tmp_path_factory, texts):
    folder = tmp_path_factory.mktemp("csv")
    frame = pd.DataFrame({"text": pd.array(texts, dtype="string"), "n": pd.array(range(len(texts)), dtype="Int64")})
    write_table(frame, folder / "synthetic.csv", "csv")
    back = load_table(folder / "synthetic.csv")
    assert len(back) == len(frame)
    assert list(back["text"]) == texts or all(t.strip() == "" for t in texts if t not in list(back["text"]))


# 7 --------------------------------------------------------------- the card
def test_a_non_private_card_says_so_first():
    card = {"privacy": {"epsilon": float("inf"), "delta": 1e-5, "privacy_unit": "example", "accountant": "prv",
                        "stages": [], "caveats": ["non_private", "insecure_seed"]},
            "data_file": "synthetic.csv", "rows": 3, "software_version": "x", "model": "m",
            "generation": {"requested": 3, "emitted": 3, "hit_limit": 0}}
    text = render_card(card)
    assert text.startswith("# Synthetic data set: NOT DIFFERENTIALLY PRIVATE")
    assert "NO differential-privacy guarantee" in text and "recompute the noise" in text


def test_categorical_without_categories_is_refused():
    with pytest.raises(ConfigError, match="declares no categories"):
        DatasetSpec.from_dict({"columns": [{"name": "c", "type": "categorical"}]})


def test_help_shows_the_real_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert re.search(r"target_epsilon.*\(default: 8\.0 unless noise_multiplier", " ".join(capsys.readouterr().out.split()))


def test_ctrl_c_says_how_to_resume(tmp_path, monkeypatch, capsys):
    (tmp_path / "data.csv").write_text(ROWS)
    config = _write_config(tmp_path, BASE)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("synth.pipeline._train", interrupted)
    assert main(["run", config]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "run the same command again" in err and "Traceback" not in err


def test_unreadable_data_file_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    from evaluation.tables import DataError

    path = tmp_path / "data.csv"
    path.write_text(ROWS)
    real_open = builtins.open

    def guarded(file, *a, **k):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied")
        return real_open(file, *a, **k)

    monkeypatch.setattr(builtins, "open", guarded)
    with pytest.raises(DataError, match="cannot read the file .Permission denied.; check its permissions"):
        load_table(path)


def test_generate_writes_a_card_that_matches_its_columns(tmp_path, capsys):
    (tmp_path / "data.csv").write_text(ROWS)
    config = _write_config(tmp_path, BASE)
    assert main(["train", config]) == 0
    assert main(["generate", config]) == 0
    card = json.loads((tmp_path / "run" / "export" / "dpsynth.json").read_text())
    frame = pd.read_json(tmp_path / "run" / "export" / "synthetic.jsonl", lines=True)
    assert card["spec"]["columns"] == list(frame.columns) == ["title", "rating", "kind"] and card["rows"] == len(frame)


def _records_run_in_parts_of_four(tmp_path, monkeypatch, before_sample=None):
    """A 10-record seeded run generated in parts of 4; the n of every RecordGenerator.sample(n) call
    goes into the returned list, then ``before_sample(calls)`` runs (it may raise, as Ctrl-C would)."""
    from synth.records.generator import RecordGenerator

    monkeypatch.setattr("synth.run_folder.GENERATION_PART", 4)
    (tmp_path / "data.csv").write_text(ROWS)
    raw = json.loads(json.dumps(BASE))
    raw["generate"] = {"n": 10, "batch_size": 4, "seed": 5}
    real_sample, calls = RecordGenerator.sample, []

    def recorded(self, n, **kw):
        calls.append(n)
        if before_sample is not None:
            before_sample(calls)
        return real_sample(self, n, **kw)

    monkeypatch.setattr(RecordGenerator, "sample", recorded)
    return raw, _write_config(tmp_path, raw), calls


def test_an_interrupted_generation_resumes_with_the_next_part(tmp_path, monkeypatch, capsys):
    interrupted = []

    def ctrl_c_in_the_second_part(calls):
        if len(calls) == 2 and not interrupted:
            interrupted.append(True)
            raise KeyboardInterrupt  # Ctrl-C while the second part is being generated

    _, config, calls = _records_run_in_parts_of_four(tmp_path, monkeypatch, ctrl_c_in_the_second_part)
    assert main(["run", config]) == 130
    parts = sorted(p.name for p in (tmp_path / "run" / "generation").glob("part-*.parquet"))
    assert parts == ["part-00000.parquet"] and not (tmp_path / "run" / "export").exists()
    calls.clear()
    assert main(["run", config]) == 0  # training resumes from its final checkpoint, generation from part 1
    assert calls == [4, 2]
    card = json.loads((tmp_path / "run" / "export" / "dpsynth.json").read_text())
    frame = pd.read_json(tmp_path / "run" / "export" / "synthetic.jsonl", lines=True)
    assert card["generation"]["requested"] == 10 and len(frame) == card["rows"] == card["generation"]["emitted"]


def test_asking_for_more_rows_keeps_the_full_parts_already_sampled(tmp_path, monkeypatch, capsys):
    raw, config, calls = _records_run_in_parts_of_four(tmp_path, monkeypatch)
    assert main(["run", config]) == 0
    assert calls == [4, 4, 2]
    first = pd.read_json(tmp_path / "run" / "export" / "synthetic.jsonl", lines=True)
    calls.clear()
    raw["generate"]["n"] = 13
    raw["output"]["overwrite"] = True
    config = _write_config(tmp_path, raw)
    assert main(["generate", config]) == 0
    assert calls == [4, 1]  # parts 0 and 1 kept; the 2-row tail is sampled again at its new size
    more = pd.read_json(tmp_path / "run" / "export" / "synthetic.jsonl", lines=True)
    pd.testing.assert_frame_equal(more.iloc[:8], first.iloc[:8])
    calls.clear()
    raw["generate"]["temperature"] = 0.5  # another sampling setting: nothing saved is ours
    config = _write_config(tmp_path, raw)
    assert main(["generate", config]) == 0
    assert calls == [4, 4, 4, 1]
