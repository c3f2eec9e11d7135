"""`dpsynth demo [records|text]`: the whole road on bundled data, offline.

records (default): DP LoRA fine-tuning of SmolLM2-135M-Instruct at ε=8 on 300 bundled
Water reviews, 200 grammar-constrained synthetic records (``synth/data/demo.toml``).
text: the same on 300 bundled drug reviews conditioned on their rating, 100 synthetic
reviews (``synth/data/demo_text.toml``).  Both write the export with its card and print
where it is, the ε spent and a few rows; any config field can be overridden
(``--train.steps 5``, ``--output.dir x``).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def add_parser(sub) -> None:
    from ..run_config import add_flags

    p = sub.add_parser("demo", help="DP-synthesise bundled data with SmolLM2 + LoRA at ε=8: records (Water "
                                    "reviews, default) or text (drug reviews)")
    p.add_argument("which", nargs="?", choices=["records", "text"], default="records",
                   help="records (default) or text")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    add_flags(p)


def run(args) -> int:
    from ..config_files import read_config
    from ..run_config import build_config, overrides_from
    from .run import pipeline_for, report

    config_path = Path(str(files("synth") / "data" / ("demo_text.toml" if args.which == "text" else "demo.toml")))
    raw = read_config(config_path)
    overrides = overrides_from(args)
    overrides.setdefault("output.dir", raw["output"]["dir"])  # the demo writes below the current directory
    if args.overwrite:
        overrides["output.overwrite"] = True
    config = build_config(raw, overrides, base_dir=config_path.parent)
    print(f"dpsynth demo {args.which}: {config.data.path} -> {config.output.dir}/export "
          f"(model {config.model.model} + {config.model.finetune}, target ε={config.train.target_epsilon})")
    report(pipeline_for(config).run(config))
    return 0
