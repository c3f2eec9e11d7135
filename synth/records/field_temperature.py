"""A sampling temperature per record field: each token is drawn at the temperature of the field it writes.

One temperature for the whole record trades recall for precision (issue 16 on Water: 0.8 writes
product names no catalogue holds, 0.4 makes every review alike).  ``generate.field_temperature``
sets some fields apart, e.g. a cold product name with warm reviews that follow it.

Which field a row is writing is read from the bytes it has written so far: the spec's grammar
writes every record in one canonical form (``{`` then ``<key>: <value>`` in spec order, joined by
``, ``, then ``}``), so a small lexer that knows where strings open and close (quotes and
backslash escapes are ASCII, never part of a UTF-8 multi-byte character) follows it byte by byte.
A token is drawn at the temperature of the field in progress before it: the comma that ends a value
(alone or in a token such as ``",``) is still that field's.  Post-processing of the trained model:
no privacy cost.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from ..spec import DatasetSpec
from .grammar import field_prefixes

_QUOTES = (ord('"'), ord("'"))
_BACKSLASH, _COMMA, _CLOSE = ord("\\"), ord(","), ord("}")
_LITERAL, _VALUE_START, _STRING, _BARE, _AFTER, _DONE = range(6)


def is_temperature(value) -> bool:
    """A sampling temperature: a finite number >= 0 (0: greedy), not a boolean."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value >= 0


def check_field_temperature(field_temperature: Mapping[str, float], spec: DatasetSpec, *,
                            where: str = "generate.field_temperature") -> None:
    """Refuse a field the generator does not write or a temperature that is not a finite number >= 0."""
    written = spec.body().names
    for name, value in field_temperature.items():
        if name not in written:
            why = "a conditioning column (its value comes from the prompt)" if name in spec.names else "not a column"
            raise ValueError(f"{where}: {name!r} is {why}; the fields the model writes are {', '.join(written)}")
        if not is_temperature(value):
            raise ValueError(f"{where}.{name} must be a finite number >= 0 (0: greedy), got {value!r}")


class _RecordLexer:
    """Where one row is in its record: the field it writes (index into the body's columns)."""

    __slots__ = ("field", "phase", "left", "quote", "escaped")

    def __init__(self, first_literal: int):
        self.field, self.phase, self.left = 0, _LITERAL, first_literal
        self.quote, self.escaped = 0, False

    def feed(self, data: bytes, literals: list[int]) -> None:
        for b in data:
            if self.phase == _LITERAL:
                self.left -= 1
                if self.left == 0:
                    self.phase = _VALUE_START
            elif self.phase == _VALUE_START:
                if b in _QUOTES:
                    self.phase, self.quote = _STRING, b
                else:
                    self.phase = _BARE  # a number, null or None: ends at the next ',' or '}'
            elif self.phase == _STRING:
                if self.escaped:
                    self.escaped = False
                elif b == _BACKSLASH:
                    self.escaped = True
                elif b == self.quote:
                    self.phase = _AFTER
            elif self.phase in (_BARE, _AFTER) and b in (_COMMA, _CLOSE):
                if b == _CLOSE or self.field + 1 == len(literals):
                    self.phase = _DONE
                else:
                    self.field += 1
                    self.phase, self.left = _LITERAL, literals[self.field] - 1  # its ',' is this byte


class FieldTemperatures:
    """Makes the ``RowTemperatures`` (``synth.lm.decoding``) of one batch: each row's next token at the
    temperature of the field it is writing (``default`` for the fields not named)."""

    def __init__(self, spec: DatasetSpec, token_bytes, default: float, per_field: Mapping[str, float]):
        check_field_temperature(per_field, spec, where="field_temperature")
        body = spec.body()
        # each field's fixed text before its value (the record's opening '{' counts as the first's)
        self.literals = [len(prefix.encode()) for prefix in field_prefixes(spec.serialization, body.names)]
        self.literals[0] += 1
        self.by_field = [float(per_field.get(name, default)) for name in body.names]
        self.default = float(default)
        self.token_bytes = token_bytes

    def __call__(self) -> "_BatchTemperatures":
        return _BatchTemperatures(self)


class _BatchTemperatures:
    def __init__(self, plan: FieldTemperatures):
        self.plan, self.rows = plan, {}

    def _lexer(self, row: int) -> _RecordLexer:
        lexer = self.rows.get(row)
        if lexer is None:
            lexer = self.rows[row] = _RecordLexer(self.plan.literals[0])
        return lexer

    def field_of(self, row: int) -> int | None:
        """The index of the field ``row`` writes next (None once the record is closed)."""
        lexer = self._lexer(row)
        return None if lexer.phase == _DONE else lexer.field

    def temperatures(self, rows: list[int]) -> torch.Tensor:
        plan = self.plan
        return torch.tensor([plan.default if (f := self.field_of(r)) is None else plan.by_field[f] for r in rows])

    def consume(self, row: int, token: int) -> None:
        self._lexer(row).feed(self.plan.token_bytes(token), self.plan.literals)
