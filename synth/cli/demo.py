"""`dpsynth demo`: the whole road on the bundled Water sample, offline.

DP LoRA fine-tuning of SmolLM2-135M-Instruct at ε=8 on 300 bundled reviews, 200
grammar-constrained synthetic records, written with their card; prints where
they are, the ε spent and a few rows.  The config is ``synth/data/demo.toml``;
any of its fields can be overridden (``--train.steps 5``, ``--output.dir x``).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def add_parser(sub) -> None:
    from ..run_config import add_flags

    p = sub.add_parser("demo", help="DP-synthesise the bundled Water sample with SmolLM2 + LoRA at ε=8")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    add_flags(p)


def run(args) -> int:
    from ..config_files import read_config
    from ..pipeline import run as run_pipeline
    from ..run_config import build_config, overrides_from
    from .run import report

    config_path = Path(str(files("synth") / "data" / "demo.toml"))
    raw = read_config(config_path)
    overrides = overrides_from(args)
    overrides.setdefault("output.dir", raw["output"]["dir"])  # the demo writes below the current directory
    if args.overwrite:
        overrides["output.overwrite"] = True
    config = build_config(raw, overrides, base_dir=config_path.parent)
    print(f"dpsynth demo: {config.data.path} -> {config.output.dir}/export "
          f"(model {config.model.model} + {config.model.finetune}, target ε={config.train.target_epsilon})")
    report(run_pipeline(config))
    return 0
