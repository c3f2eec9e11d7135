"""String rules of the derived grammar accept exactly what the record parser accepts."""

from __future__ import annotations

import lark
import pytest

from synth.records.grammar import _string_regex


def _parser(style):
    return lark.Lark("start: s\ns: " + _string_regex(style, 9) + "\n", parser="lalr")


@pytest.mark.parametrize("text", ["'a\\x41b'", "'\\u00e9'", '"it\'s"', "'\\\\N'"])
def test_python_literal_strings_accepted(text):
    _parser("dict").parse(text)


@pytest.mark.parametrize("text", ["'\\ud800'", "'\\N{DASH}'", "'a\x00'", "'\\q'", "'a\rb'", "'0123456789'", "''", '""'])
def test_python_literal_strings_rejected(text):
    with pytest.raises(lark.exceptions.LarkError):
        _parser("dict").parse(text)


def test_json_strings():
    _parser("json").parse('"\\u00e9\\n"')
    for bad in ['"\\udc00"', '"\\x41"', '"a\tb"']:
        with pytest.raises(lark.exceptions.LarkError):
            _parser("json").parse(bad)
