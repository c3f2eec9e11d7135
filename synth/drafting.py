"""A draft spec from a table's schema (`dpsynth init`, and `synth.fit` without a spec).

What is read from the data: the column names and, per column, its kind (text, categorical,
integer, float, nullable), decided from how its values look.  That is the table's *schema*,
which the draft treats as public and says so: the user reviews it, and the card lists it as
declared public.  No value, category, range or length is copied into the draft: every domain is
either left for the user to declare or marked ``estimate = true``, measured with DP at training
time and paid from the budget.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

# a string column with at most this many distinct values, each repeated (on average at least
# twice) and short, is drafted as categorical; anything else is text
CATEGORICAL_MAX_VALUES = 100
CATEGORICAL_MAX_CHARS = 64
_ID_NAME = re.compile(r"(^|[_\W])(id|uuid|guid|key)$|^id[_\W]|_id$", re.IGNORECASE)
_USER_NAME = re.compile(r"(user|customer|patient|author|client|member|account|person)", re.IGNORECASE)
SCHEMA_FACT = "schema: column names and types ({how}; treated as public)"


@dataclass
class DraftColumn:
    name: str
    type: str
    nullable: bool
    why: str  # how the type was chosen, shown as the line's comment

    def spec_entry(self) -> dict:
        entry: dict = {"name": self.name, "type": self.type}
        if self.nullable:
            entry["nullable"] = True
        entry["estimate"] = True  # the domain: measured with DP (paid) unless the user declares it
        return entry

    def domain_hint(self) -> str:
        return {"categorical": "category list: DP estimate (paid); or declare categories = [...] and drop estimate",
                "integer": "range: DP estimate (paid); or declare min = ..., max = ... and drop estimate",
                "float": "range: DP estimate (paid); or declare min = ..., max = ... and drop estimate",
                "text": "max_chars: DP estimate (paid); or declare max_chars = ... and drop estimate"}[self.type]


@dataclass
class Draft:
    columns: list[DraftColumn]
    left_out: dict[str, str] = field(default_factory=dict)  # column -> why the draft leaves it out
    user_column_hint: str | None = None  # a column that looks like a user id (never chosen for the user)

    @property
    def has_text(self) -> bool:
        return any(c.type == "text" for c in self.columns)

    def spec_dict(self) -> dict:
        return {"columns": [c.spec_entry() for c in self.columns]}


def draft_from_frame(frame: pd.DataFrame) -> Draft:
    """Column kinds from the frame's dtypes and how its values look (see the module docstring)."""
    from trainer.errors import ConfigError

    if len(frame.columns) == 0 or len(frame) == 0:
        raise ConfigError("the data has no columns or no rows: nothing to draft a spec from")
    columns, left_out, user_hint = [], {}, None
    for name in frame.columns:
        values = frame[name]
        present = values.dropna()
        if pd.api.types.is_string_dtype(present) or present.dtype == object:
            present = present[present.astype(str).str.len() > 0]
        distinct = present.nunique()
        if _ID_NAME.search(str(name)) and len(present) > 1:
            if distinct == len(present):
                left_out[str(name)] = "looks like a row identifier (every value distinct): not synthesised"
                continue
            if _USER_NAME.search(str(name)) or user_hint is None:
                user_hint = str(name)
            left_out[str(name)] = ("looks like an identifier with repeats: not synthesised; if it names a user, "
                                   f"set spec.privacy_unit = {json.dumps(str(name))} for user-level privacy")
            continue
        columns.append(_infer(str(name), values, present, distinct))
    if not columns:
        raise ConfigError(f"every column of the data looks like an identifier ({list(left_out)}): nothing to "
                          "synthesise; write the spec by hand")
    return Draft(columns, left_out, user_hint)


def _infer(name: str, values: pd.Series, present: pd.Series, distinct: int) -> DraftColumn:
    nullable = len(present) < len(values)
    if len(present) == 0:
        return DraftColumn(name, "text", True, "every value is missing")
    if pd.api.types.is_bool_dtype(present):
        return DraftColumn(name, "categorical", nullable, "true / false values")
    numbers = pd.to_numeric(present, errors="coerce")
    if numbers.notna().all():
        integral = bool((numbers % 1 == 0).all()) and not _written_as_decimals(present)
        return DraftColumn(name, "integer" if integral else "float", nullable,
                           "every value is a whole number" if integral else "every value is a number")
    text = present.astype(str)
    if (distinct <= CATEGORICAL_MAX_VALUES and distinct * 2 <= len(text)
            and text.str.len().max() <= CATEGORICAL_MAX_CHARS):
        return DraftColumn(name, "categorical", nullable, "few distinct short values, each repeated")
    return DraftColumn(name, "text", nullable, "free text (many distinct or long values)")


def _written_as_decimals(present: pd.Series) -> bool:
    """"3.0" in a CSV is a float column's value, even when it is whole."""
    if pd.api.types.is_float_dtype(present):
        return True
    return bool(present.astype(str).str.contains(r"[.eE]", regex=True).any())


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    return repr(value)


def _inline(entry: dict) -> str:
    return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in entry.items()) + " }"


def render_run_config(draft: Draft, *, data_path: str, source: str, epsilon: float, output_dir: str) -> str:
    """The draft as a commented TOML run config (``data_path`` relative to the config's folder)."""
    road = "aim" if not draft.has_text else "lm"
    estimated = len(draft.columns)
    lines = [
        f"# Draft run config for {source}, written by `dpsynth init`. Review it, then `dpsynth run <this file>`.",
        "#",
        "# Read from the data (not DP): the column names and each column's kind, from how its values look. They",
        "# are the table's schema and are treated as public (the card says so): check them. No value, category,",
        "# range or length of the data is written here. Every column's domain is `estimate = true`: measured with",
        f"# DP when the run starts and paid from the budget ({estimated} Gaussian estimates of σ = spec.estimate_noise,",
        "# listed in the card). A domain you know publicly (a code list, a legal range) is better declared: it",
        "# costs nothing and leaves more ε for the model. `dpsynth run --dry-run` shows the plan and the ε of each stage.",
        "",
        "[data]",
        f"path = {_toml(data_path)}   # relative to this file",
        "",
        "[spec]",
        'description = ""   # a public one-line description of a record (the LM prompt; never read from the data)',
    ]
    if draft.user_column_hint:
        lines.append(f'privacy_unit = "example"   # or {_toml(draft.user_column_hint)}: one user per unit')
    lines.append("columns = [")
    width = max(len(_inline(c.spec_entry())) for c in draft.columns) + 1
    for c in draft.columns:
        lines.append(f"  {(_inline(c.spec_entry()) + ','):<{width}}  # {c.why}; {c.domain_hint()}")
    lines.append("]")
    if draft.left_out:
        lines += ["# Columns of the data left out of this draft (the run warns about them; add them back above to "
                  "synthesise them):"]
        lines += [f"#   {name}: {why}" for name, why in draft.left_out.items()]
    lines += ["", "[columns]"]
    if road == "aim":
        lines.append('model = "aim"   # no text column: a DP marginal model (AIM) makes the whole table, no LM')
    else:
        lines.append('model = "lm"    # text columns: the DP LM writes records; "aim" models the other columns '
                     'with DP marginals and the LM writes the text given them; "pairs" the same with every pair '
                     "measured once (few non-text columns: the run keeps the PRV accountant)")
    lines += [
        "",
        "[train]",
        f"target_epsilon = {epsilon!r}   # the whole run: estimates + model, composed in one ledger",
        "",
        "[generate]",
        "n = 1000   # synthetic rows",
        "",
        "[output]",
        f"dir = {_toml(output_dir)}",
        'format = "csv"',
        "",
    ]
    return "\n".join(lines)


def write_draft(data: str | Path, out: str | Path, *, epsilon: float = 4.0, force: bool = False) -> Draft:
    """`dpsynth init`: draft ``out`` (a TOML run config) from ``data``'s schema."""
    import os

    from trainer.errors import ConfigError
    from trainer.io import atomic_write_text

    from .loading import load_table

    data, out = Path(data), Path(out)
    if out.exists() and not force:
        raise ConfigError(f"{out} exists; pass --force to replace it, or --out to write elsewhere")
    draft = draft_from_frame(load_table(data))
    relative = os.path.relpath(data.resolve(), out.resolve().parent)
    text = render_run_config(draft, data_path=relative, source=data.name, epsilon=epsilon,
                             output_dir=f"runs/{data.stem}")
    from .config_files import read_config
    from .run_config import build_config

    atomic_write_text(out, text)
    try:  # the draft must read back as the valid config it claims to be
        build_config(read_config(out), base_dir=out.parent)
    except Exception:
        out.unlink()
        raise
    return draft
