"""`dpsynth generate CONFIG`: sample from the trained generator and export with the card."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    from ..run_config import add_flags

    p = sub.add_parser("generate", help="sample records from <output.dir>/generator and export them with their card")
    p.add_argument("config", type=Path, help="run config (YAML or TOML), the one used to train")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export folder")
    add_flags(p)


def run(args) -> int:
    from .run import load, pipeline_for, report

    config = load(args)
    report(pipeline_for(config).generate(config))
    return 0
