"""SynthConfig: one run = data + spec + model + training + generation + output.

Each section is a dataclass whose fields carry their help text; the CLI builds
``--section.field`` flags from them, so a config file value can be overridden on
the command line and ``--help`` lists every option with its default.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from trainer import TrainConfig
from trainer.errors import ConfigError, nearest_key_hint

from .records.generator import ModelChoice
from .spec import DatasetSpec


@dataclass
class DataSection:
    path: str = field(default="", metadata={"help": "The private data set: .csv, .jsonl or .parquet."})
    spec: str | None = field(default=None, metadata={"help": "Spec file (YAML/TOML); or give [spec] inline in the config."})
    skip_unparseable: bool = field(default=False, metadata={"help": "Drop private records the grammar rejects (counted) instead of aborting."})


@dataclass
class GenerateSection:
    n: int = field(default=200, metadata={"help": "Synthetic records to generate."})
    batch_size: int = field(default=16, metadata={"help": "Records decoded in parallel."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (0: greedy)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass."})
    seed: int | None = field(default=None, metadata={"help": "Seed for sampling (None: random)."})
    conditioning_noise: float = field(default=10.0, metadata={"help": "σ of the DP histogram of conditioning values (paid from the budget; unused when spec.conditioning_weights is declared)."})


@dataclass
class OutputSection:
    dir: str = field(default="runs/synth", metadata={"help": "Run folder: checkpoints, generator, reports; the export goes to <dir>/export."})
    format: str = field(default="csv", metadata={"help": "Export format: csv, jsonl or parquet."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing export folder."})


SECTIONS = {"data": DataSection, "model": ModelChoice, "train": TrainConfig, "generate": GenerateSection, "output": OutputSection}


@dataclass
class SynthConfig:
    data: DataSection
    spec: DatasetSpec
    model: ModelChoice
    train: TrainConfig
    generate: GenerateSection
    output: OutputSection
    evaluation: dict[str, Any] | None = None  # an [evaluation] table: score the export after `dpsynth run`


def build_config(raw: dict[str, Any], overrides: dict[str, Any] | None = None, *, base_dir: Path | None = None) -> SynthConfig:
    """Validate a config mapping (from a file) plus ``section.field`` overrides into a SynthConfig."""
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        raw.setdefault(section, {})[key] = value
    valid = [*SECTIONS, "spec", "evaluation"]
    for key in raw:
        if key not in valid:
            raise ConfigError(f"unknown config section {key!r}{nearest_key_hint(key, valid)}")
    built = {}
    for name, cls in SECTIONS.items():
        values = raw.get(name, {})
        names = [f.name for f in fields(cls)]
        for key in values:
            if key not in names:
                raise ConfigError(f"unknown key {name}.{key}{nearest_key_hint(key, names)}")
        if name == "train" and "target_epsilon" not in values and "noise_multiplier" not in values:
            values = {**values, "target_epsilon": 8.0}
        built[name] = cls(**values)
    if "spec" in raw:
        spec = DatasetSpec.from_dict(raw["spec"])
    elif built["data"].spec:
        path = Path(built["data"].spec)
        spec = DatasetSpec.from_file(path if path.is_absolute() or base_dir is None else base_dir / path)
    else:
        raise ConfigError("no dataset spec: give a [spec] section or data.spec = 'path/to/spec.yaml'")
    if not built["data"].path:
        raise ConfigError("data.path is required: the private data set to synthesise")
    evaluation = raw.get("evaluation")
    if evaluation is not None:
        from evaluation import EvalSpec

        EvalSpec.from_dict({"spec": {"columns": spec.names}, "evaluation": evaluation})  # unknown keys fail now
    return SynthConfig(spec=spec, evaluation=evaluation, **built)


def add_flags(parser: argparse.ArgumentParser) -> None:
    """``--section.field`` for every field of every section, with its help and default."""
    for section, cls in SECTIONS.items():
        group = parser.add_argument_group(section)
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else None
            kind = _scalar_type(hints[f.name])
            kw = dict(dest=f"{section}.{f.name}", default=argparse.SUPPRESS,
                      help=f"{f.metadata.get('help', '')} (default: {default})")
            if kind is bool:
                group.add_argument(f"--{section}.{f.name}", type=_parse_bool, metavar="BOOL", **kw)
            else:
                group.add_argument(f"--{section}.{f.name}", type=kind, metavar=kind.__name__.upper(), **kw)


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if "." in k}


def _scalar_type(annotation) -> type:
    union = isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union
    args = [a for a in typing.get_args(annotation) if a is not type(None)] if union else []
    return args[0] if args else annotation


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
