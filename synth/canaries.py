"""Canary records for the privacy audit: random, well-formed records of the spec.

Each canary is built from the spec alone (random letters for text, a random declared
category or number in the declared range), so it is unlike any real record and its
membership shows only through what training did with it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .spec import ColumnSpec, DatasetSpec

_LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))


def _word(rng: np.random.Generator) -> str:
    return "".join(rng.choice(_LETTERS, size=int(rng.integers(3, 9))))


def _value(col: ColumnSpec, rng: np.random.Generator):
    if col.type == "categorical" and col.categories:
        return str(rng.choice(col.categories))
    if col.type in ("text", "categorical"):
        n_words = 1 if col.type == "categorical" else int(rng.integers(3, 9))
        return " ".join(_word(rng) for _ in range(n_words))[: col.max_chars]
    lo = col.min if col.min is not None else 0
    hi = col.max if col.max is not None else 100
    if col.type == "integer":
        return int(rng.integers(int(np.ceil(lo)), int(np.floor(hi)) + 1))
    return float(round(rng.uniform(lo, hi), 1))


def make_canaries(spec: DatasetSpec, m: int, rng: np.random.Generator) -> pd.DataFrame:
    frame = pd.DataFrame([{c.name: _value(c, rng) for c in spec.columns} for _ in range(m)], columns=spec.names)
    for col in spec.columns:
        frame[col.name] = frame[col.name].astype({"integer": "Int64", "float": "float64"}.get(col.type, "string"))
    return frame


def make_canary_documents(text_column: str, label_names: list[str], m: int, rng: np.random.Generator,
                          *, words: tuple[int, int] = (12, 24)) -> pd.DataFrame:
    """Canary documents for a text run: random letter words (a secret no real document holds), each
    with random label values of the same kind (a random word: the labels only enter the prompt)."""
    rows = []
    for _ in range(m):
        row = {text_column: " ".join(_word(rng) for _ in range(int(rng.integers(*words))))}
        row.update({name: _word(rng) for name in label_names})
        rows.append(row)
    return pd.DataFrame(rows, columns=[text_column, *label_names]).astype("string")
