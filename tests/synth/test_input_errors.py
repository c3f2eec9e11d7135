"""Bad input gets a clear error naming the file, line, row or field."""

from __future__ import annotations

import pytest

from synth.loading import DataError, load_table, typed_frame
from synth.spec import DatasetSpec
from trainer.errors import ConfigError


def _spec(**kw):
    return DatasetSpec.from_dict({"columns": [{"name": "title"}, {"name": "rating", "type": "integer"}], **kw})


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_table(tmp_path / "nope.csv")


def test_unknown_format(tmp_path):
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(DataError, match="unknown data format '.xlsx'"):
        load_table(tmp_path / "d.xlsx")


def test_empty_and_header_only(tmp_path):
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(DataError, match="is empty"):
        load_table(tmp_path / "e.csv")
    (tmp_path / "h.csv").write_text("title,rating\n")
    with pytest.raises(DataError, match="no rows"):
        load_table(tmp_path / "h.csv")


def test_column_absent_lists_present_columns(tmp_path):
    (tmp_path / "d.csv").write_text("title,stars\ngood,5\n")
    with pytest.raises(DataError, match=r"\['rating'\].*the data has: \['title', 'stars'\]"):
        typed_frame(load_table(tmp_path / "d.csv"), _spec(), source="d.csv")


def test_non_utf8_names_the_line(tmp_path):
    (tmp_path / "d.csv").write_bytes(b"title,rating\ngood,5\nbad \xff\xfe,4\n")
    with pytest.raises(DataError, match="line 3: not UTF-8"):
        load_table(tmp_path / "d.csv")


def test_bad_number_and_missing_value_name_the_row(tmp_path):
    (tmp_path / "d.csv").write_text("title,rating\ngood,5\nok,five\n")
    with pytest.raises(DataError, match=r"row 2, column 'rating': 'five' is not a number"):
        typed_frame(load_table(tmp_path / "d.csv"), _spec(), source="d.csv")
    (tmp_path / "m.csv").write_text("title,rating\n,5\n")
    with pytest.raises(DataError, match="row 1, column 'title': the value is missing"):
        typed_frame(load_table(tmp_path / "m.csv"), _spec(), source="m.csv")


def test_jsonl_bad_line(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"title": "a", "rating": 1}\n{"title": \n')
    with pytest.raises(DataError, match="line 2: invalid JSON"):
        load_table(tmp_path / "d.jsonl")


def test_unknown_spec_key_suggests_nearest():
    with pytest.raises(ConfigError, match="did you mean 'max_chars'"):
        DatasetSpec.from_dict({"columns": [{"name": "t", "max_char": 5}]})
    with pytest.raises(ConfigError, match="did you mean 'serialization'"):
        DatasetSpec.from_dict({"columns": [{"name": "t"}], "serialisation": "json"})


def test_grammar_syntax_error_names_line_and_column(tmp_path):
    from synth.records.user_grammar import GrammarError, load_user_grammar

    (tmp_path / "g.lark").write_text('start: "{" field "}"\nfield: /[a-z]+/ |\n  ) oops\n')
    with pytest.raises(GrammarError, match=r"g.lark: .*line 3, column \d+"):
        load_user_grammar(tmp_path / "g.lark")


def test_private_rows_that_do_not_parse_are_counted_with_examples():
    from synth.records.user_grammar import check_private_records

    grammar = 'start: "<" WORD ">"\n%import common.WORD\n'
    texts = ["<ok>", "<also>", "bad1", "<x>", "bad2", "bad3", "bad4"]
    with pytest.raises(DataError, match=r"(?s)4 of 7 records do not parse.*row 3: bad1.*row 5: bad2.*row 6: bad3") as err:
        check_private_records(grammar, texts, source="d.csv", skip=False)
    assert "bad4" not in str(err.value) and "skip_unparseable" in str(err.value)
    assert check_private_records(grammar, texts, source="d.csv", skip=True) == [2, 4, 5, 6]


def test_conditioning_needs_a_public_domain(tmp_path):
    from synth.run_config import build_config

    with pytest.raises(ConfigError, match="'rating' needs a public domain"):  # its values would come from the data
        build_config({"data": {"path": "d.csv"}, "spec": {
            "columns": [{"name": "title"}, {"name": "rating", "type": "integer"}], "conditioning": ["rating"]}})


def test_unknown_config_key_suggests_nearest():
    from synth.run_config import build_config

    with pytest.raises(ConfigError, match="did you mean 'steps'"):
        build_config({"data": {"path": "x.csv"}, "spec": {"columns": [{"name": "t"}]}, "train": {"step": 3}})
    with pytest.raises(ConfigError, match="did you mean 'generate'"):
        build_config({"data": {"path": "x.csv"}, "spec": {"columns": [{"name": "t"}]}, "generat": {}})


def test_existing_output_is_refused_without_overwrite(tmp_path):
    import pandas as pd

    from synth.export import export

    (tmp_path / "out").mkdir()
    with pytest.raises(ConfigError, match="exists; pass --overwrite"):
        export(pd.DataFrame({"a": [1]}), tmp_path / "out", fmt="csv", card={})
