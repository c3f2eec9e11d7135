"""Parse records with the user's lark grammar: LALR when the grammar allows it, Earley otherwise.

Node extraction: a node is a named rule (or terminal) of the parse tree; its text is
the slice of the record it spans, so nodes of Struct-Bench's dict-literal grammars
come out exactly as written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import lark

from trainer.errors import DPSynthError


class GrammarError(DPSynthError, ValueError):
    """The grammar file cannot be compiled (the message names line and column)."""


@dataclass
class ParsedRecord:
    ok: bool
    nodes: dict[str, list[str]] = field(default_factory=dict)  # node name -> texts, in order


@dataclass
class RecordGrammar:
    parser: lark.Lark
    algorithm: str  # "lalr" or "earley"

    @classmethod
    def from_text(cls, text: str, *, source: str = "<grammar>") -> "RecordGrammar":
        return _compile(text, source)

    @classmethod
    def from_file(cls, path: str | Path) -> "RecordGrammar":
        path = Path(path)
        if not path.is_file():
            raise GrammarError(f"grammar file {path} does not exist")
        return _compile(path.read_text(encoding="utf-8"), str(path))

    def parse(self, text: str) -> ParsedRecord:
        try:
            tree = self.parser.parse(text)
        except lark.exceptions.LarkError:
            return ParsedRecord(False)
        nodes: dict[str, list[str]] = {}
        for sub in tree.iter_subtrees_topdown():
            if sub.meta.empty:
                continue
            nodes.setdefault(str(sub.data), []).append(text[sub.meta.start_pos : sub.meta.end_pos])
            for child in sub.children:
                if isinstance(child, lark.Token):
                    nodes.setdefault(child.type, []).append(str(child))
        return ParsedRecord(True, nodes)


@lru_cache(maxsize=32)
def _compile(text: str, source: str) -> RecordGrammar:
    common = dict(start="start", propagate_positions=True, keep_all_tokens=True)
    try:  # Earley takes any context-free grammar: a failure here is the grammar's syntax
        earley = lark.Lark(text, parser="earley", **common)
    except (lark.exceptions.GrammarError, lark.exceptions.UnexpectedInput) as err:
        raise GrammarError(f"{source}: {err}".strip()) from None
    try:
        return RecordGrammar(lark.Lark(text, parser="lalr", **common), "lalr")
    except lark.exceptions.GrammarError:  # a conflict: not LALR(1), keep Earley
        return RecordGrammar(earley, "earley")
