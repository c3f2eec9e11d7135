"""A grammar the user gives: compiled by the evaluator's RecordGrammar (one place for lark
loading, LALR-else-Earley and syntax errors with line and column), and checked against the
private records as serialised."""

from __future__ import annotations

from pathlib import Path

from evaluation import GrammarError as _EvalGrammarError
from evaluation import RecordGrammar
from trainer.errors import ConfigError

from ..loading import DataError


class GrammarError(ConfigError):
    """The grammar file cannot be compiled."""


def load_user_grammar(path: str | Path) -> str:
    try:
        RecordGrammar.from_file(path)
    except _EvalGrammarError as err:
        raise GrammarError(str(err)) from None
    return Path(path).read_text(encoding="utf-8")


def check_private_records(grammar: str, texts: list[str], *, source: str, skip: bool, note: str = "") -> list[int]:
    """Indices of private records that do not parse.  Aborts with the count and three examples,
    unless ``skip`` (then the caller drops them and the count is reported)."""
    parser = RecordGrammar.from_text(grammar)
    bad = [i for i, text in enumerate(texts) if not parser.parse(text).ok]
    if bad and not skip:
        examples = "\n".join(f"  row {i + 1}: {texts[i][:160]}" for i in bad[:3])
        raise DataError(
            f"{source}: {len(bad)} of {len(texts)} records do not parse under the grammar{note}, e.g.\n"
            f"{examples}\n"
            "Fix the grammar or the data, or pass --data.skip_unparseable true to train without them."
        )
    return bad
