"""A grammar the user gives: compile it with lark (errors with line and column) and check
that the private records, as serialised, parse under it."""

from __future__ import annotations

from pathlib import Path

from trainer.errors import ConfigError

from ..loading import DataError


class GrammarError(ConfigError):
    """The grammar file cannot be compiled."""


def load_user_grammar(path: str | Path) -> str:
    import lark

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"grammar file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        lark.Lark(text, start="start")
    except lark.exceptions.UnexpectedInput as err:
        raise GrammarError(f"{path}, line {err.line}, column {err.column}: grammar syntax error") from None
    except lark.exceptions.GrammarError as err:
        raise GrammarError(f"{path}: {err}") from None
    return text


def check_private_records(grammar: str, texts: list[str], *, source: str, skip: bool) -> list[int]:
    """Indices of private records that do not parse.  Aborts with the count and three examples,
    unless ``skip`` (then the caller drops them and the count is reported)."""
    import lark

    try:
        parser = lark.Lark(grammar, start="start", parser="lalr")
    except lark.exceptions.GrammarError:
        parser = lark.Lark(grammar, start="start", parser="earley")
    bad = []
    for i, text in enumerate(texts):
        try:
            parser.parse(text)
        except lark.exceptions.LarkError:
            bad.append(i)
    if bad and not skip:
        examples = "\n".join(f"  row {i + 1}: {texts[i][:160]}" for i in bad[:3])
        raise DataError(
            f"{source}: {len(bad)} of {len(texts)} records do not parse under the grammar, e.g.\n{examples}\n"
            "Fix the grammar or the data, or pass --data.skip_unparseable true to train without them."
        )
    return bad
