"""A lark grammar for the serialised record, derived from the spec.

The same text serves lark (to check records) and llguidance (to constrain
decoding).  Every text field has a public length bound (``max_chars``), so every
record closes within a known number of characters.  Rule names are the column
names (sanitised), so evaluation can extract nodes by column.
"""

from __future__ import annotations

import json
import math
import re

from ..spec import ColumnSpec, DatasetSpec

_MAX_ENUM = 1000  # enumerate integer ranges up to this many values as literals; wider ones by a regex
_LIMIT = 10**18 - 1  # the widest integer the grammar writes (18 digits), for an undeclared bound


def rule_name(column: str) -> str:
    name = re.sub(r"[^a-z0-9_]", "_", column.lower())
    return name if re.match(r"[a-z_]", name) else f"c_{name}"


def _lit(text: str) -> str:
    """A lark string literal for ``text`` (DEL escaped: llguidance's lexer refuses it raw)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


# JSON string content: any char but quote, backslash and controls, or a JSON escape.
# \\u escapes exclude the surrogates D800-DFFF: they parse, but cannot be written as UTF-8.
_U4 = r"u([0-9a-cA-Ce-fE-F][0-9a-fA-F]{3}|[dD][0-7][0-9a-fA-F]{2})"
_JSON_CHAR = r'([^"\\\x00-\x1f]|\\["\\\/bfnrt]|\\' + _U4 + ")"
# Python literal content: no raw controls (repr never writes them; a raw CR or NUL
# breaks literal_eval), and only escapes literal_eval accepts.
_PY_ESCAPE = r"\\([\\'\"abfnrtv]|x[0-9a-fA-F]{2}|" + _U4 + r"|U000[1-9a-fA-F][0-9a-fA-F]{4}|U0010[0-9a-fA-F]{4})"
_PY_SINGLE = r"([^'\\\x00-\x1f\x7f]|" + _PY_ESCAPE + ")"
_PY_DOUBLE = r'([^"\\\x00-\x1f\x7f]|' + _PY_ESCAPE + ")"


def _string_regex(style: str, n: int) -> str:
    """1 to ``n`` characters: never empty, since an empty string written to CSV reads back as missing."""
    if style == "json":
        return f'/"{_JSON_CHAR}{{1,{n}}}"/'
    return f"/'{_PY_SINGLE}{{1,{n}}}'/ | /\"{_PY_DOUBLE}{{1,{n}}}\"/"


def _quoted(style: str, value: str) -> str:
    return json.dumps(value, ensure_ascii=False) if style == "json" else repr(value)


def _digit_class(a: int, b: int) -> str:
    return str(a) if a == b else f"[{a}-{b}]"


def _same_length(a: str, b: str) -> list[str]:
    """Regex alternatives for every digit string of len(a) between a and b (a <= b, same length)."""
    if a == b:
        return [a]
    if len(a) == 1:
        return [_digit_class(int(a), int(b))]
    if a[0] == b[0]:
        return [a[0] + r for r in _same_length(a[1:], b[1:])]
    n = len(a) - 1
    out, start, end = [], int(a[0]), int(b[0])
    if a[1:] != "0" * n:  # a[0] followed by a[1:] .. 99..9
        out += [a[0] + r for r in _same_length(a[1:], "9" * n)]
        start += 1
    if b[1:] != "9" * n:
        end -= 1
    if start <= end:
        out.append(_digit_class(start, end) + ("[0-9]" if n == 1 else f"[0-9]{{{n}}}"))
    if b[1:] != "9" * n:  # b[0] followed by 00..0 .. b[1:]
        out += [b[0] + r for r in _same_length("0" * n, b[1:])]
    return out


def _non_negative(lo: int, hi: int) -> list[str]:
    """Alternatives matching exactly the decimal integers in [lo, hi] (0 <= lo), no leading zeros.
    Longest first: Python's re (lark) takes the first alternative that matches, not the longest."""
    out = []
    for digits in range(len(str(hi)), len(str(lo)) - 1, -1):
        a, b = max(lo, 10 ** (digits - 1) if digits > 1 else 0), min(hi, 10**digits - 1)
        if a <= b:
            out += _same_length(str(a), str(b))
    return out


def int_range_regex(lo: int, hi: int) -> str:
    """A regex (no slashes) matching exactly the integers in [lo, hi], written as ``str(int)`` writes them."""
    alts = []
    if lo < 0:
        alts += ["-" + r for r in _non_negative(max(1, -hi), -lo)]
    if hi >= 0:
        alts += _non_negative(max(0, lo), hi)
    return "(" + "|".join(alts) + ")"


def _int_alts(lo: int, hi: int) -> str:
    return int_range_regex(lo, hi)[1:-1]


def _number(col: ColumnSpec) -> str:
    """Integer: enumerated when the declared range is small.  Float: ``repr`` form; with a
    declared range whose bounds are whole numbers, exactly that range ([1, 5] allows 1.0 to
    5.0, never 5.5).  Other ranges bound the integer part here and are clamped on parse."""
    has_range = col.min is not None and col.max is not None
    if col.type == "integer":
        lo = -_LIMIT if col.min is None else max(-_LIMIT, math.ceil(col.min))
        hi = _LIMIT if col.max is None else min(_LIMIT, math.floor(col.max))
        if hi - lo < _MAX_ENUM:
            return " | ".join(_lit(str(v)) for v in range(lo, hi + 1))
        return f"/{int_range_regex(lo, hi)}/"  # any width: the grammar enforces the declared range exactly
    frac = r"\.[0-9]{1,6}"
    if not has_range:
        return f"/-?(0|[1-9][0-9]{{0,15}}){frac}/"
    lo, hi = math.floor(col.min), math.floor(col.max)
    if lo < 0:  # negative ranges: bound the integer part only (clamped on parse)
        return f"/-?({_int_alts(0, max(abs(lo), abs(hi)))}){frac}/"
    if float(col.max).is_integer() and hi > lo:
        return f"/({_int_alts(lo, hi - 1)}){frac}/ | /{hi}" + r"\.0{1,6}/"
    return f"/({_int_alts(lo, hi)}){frac}/"


def _value(col: ColumnSpec, style: str) -> str:
    if col.type == "categorical" and col.categories is not None:
        alts = " | ".join(_lit(_quoted(style, c)) for c in col.categories)
    elif col.type in ("text", "categorical"):
        alts = _string_regex(style, col.max_chars)
    else:
        alts = _number(col)
    if col.nullable:
        alts += " | " + _lit("null" if style == "json" else "None")
    return alts


def field_prefixes(style: str, names: list[str]) -> list[str]:
    """The fixed text before each field's value in a record (after its opening ``{``): the quoted key
    and ``: ``, after ``, `` from the second field on."""
    return [("" if i == 0 else ", ") + _quoted(style, name) + ": " for i, name in enumerate(names)]


def derive_grammar(spec: DatasetSpec, columns: list[str] | None = None, pinned: dict[str, str] | None = None) -> str:
    """Lark grammar (start rule ``start``) for records of ``columns`` (default: all) in spec order.
    ``pinned``: columns whose value is fixed, mapped to the exact text of that value (as
    ``serialize_value`` writes it); the others keep their spec's rule."""
    style = spec.serialization
    pinned = pinned or {}
    cols = [c for c in spec.columns if columns is None or c.name in columns]
    unknown = set(pinned) - {c.name for c in cols}
    if unknown:
        raise ValueError(f"pinned columns {sorted(unknown)} are not in the grammar's columns")
    parts, rules = [], []
    for prefix, col in zip(field_prefixes(style, [c.name for c in cols]), cols, strict=True):
        parts.append(f"{_lit(prefix)} {rule_name(col.name)}")
        value = _lit(pinned[col.name]) if col.name in pinned else _value(col, style)
        rules.append(f"{rule_name(col.name)}: {value}")
    start = f'start: "{{" {" ".join(parts)} "}}"'
    return "\n".join([start, *rules]) + "\n"
