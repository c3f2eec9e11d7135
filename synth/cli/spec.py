"""`dpsynth spec`: every key of a records run's [spec] table and of its columns, with its default."""

from __future__ import annotations

import argparse


def spec_reference() -> str:
    from dataclasses import MISSING, fields

    from ..spec import ColumnSpec, DatasetSpec

    def table(cls, title: str) -> list[str]:
        lines = [title]
        for f in fields(cls):
            if f.default is not MISSING:
                default = repr(f.default)
            elif f.default_factory is not MISSING:  # type: ignore[misc]
                default = repr(f.default_factory())  # type: ignore[misc]
            else:
                default = "required"
            lines.append(f"  {f.name:<22} {f.metadata.get('help', '')} (default: {default})")
        return lines

    return "\n".join([
        *table(DatasetSpec, "[spec] (a records run; or a spec file given as data.spec):"),
        "",
        *table(ColumnSpec, "each entry of spec.columns, e.g. { name = \"age\", type = \"integer\", min = 17, max = 90 }:"),
        "",
        "Rules: a categorical column needs its categories declared, or estimate = true (a DP estimate, paid); "
        "it is never free text. An integer or float column's declared [min, max] is enforced when generating, "
        "whatever its width. `dpsynth init DATA` drafts a spec from a file; every other section of a run config "
        "(data, model, train, generate, columns, output) is listed by `dpsynth run --help`.",
    ])


def add_parser(sub) -> None:
    sub.add_parser("spec", help="list every key of the [spec] table and of its columns, with defaults",
                   description=spec_reference(), formatter_class=argparse.RawDescriptionHelpFormatter)


def run(args) -> int:
    print(spec_reference())
    return 0
