"""Node values as the metrics read them: string literals unquoted, numbers parsed."""

from __future__ import annotations

import ast
import json


def unquote(text: str) -> str:
    """The value of a quoted string literal (Python or JSON); other node texts as they are."""
    s = text.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        try:
            value = ast.literal_eval(s)
        except (ValueError, SyntaxError):
            try:
                value = json.loads(s)
            except ValueError:
                return s
        if isinstance(value, str):
            return value
    return s


def as_number(text: str) -> float | None:
    try:
        return float(unquote(text))
    except ValueError:
        return None


def word_count(text: str) -> int:
    return len(unquote(text).split())
