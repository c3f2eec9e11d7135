"""SynthConfig: one run = data + spec + model + training + generation + output.

Each section is a dataclass whose fields carry their help text; the CLI builds
``--section.field`` flags from them, so a config file value can be overridden on
the command line and ``--help`` lists every option with its default.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from trainer import TrainConfig
from trainer.config import check_field_types
from trainer.errors import ConfigError, nearest_key_hint

from .albums.spec import AlbumsSpec
from .diffusion import UNetChoice
from .images.spec import ImagesSpec
from .lm import ModelChoice
from .lm.continuous import MAX_CACHE_GB
from .lm.text_spec import TextSpec
from .marginals.aim import ROUNDS_PER_COLUMN
from .marginals.column_model import MECHANISMS
from .records.field_temperature import is_temperature
from .spec import DatasetSpec

INVALID_ROWS = ("error", "drop", "clip")


@dataclass
class DataSection:
    path: str = field(default="", metadata={"help": "The private data set: .csv, .jsonl or .parquet."})
    spec: str | None = field(default=None, metadata={"help": "Spec file (YAML/TOML); or give [spec] inline in the config."})
    skip_unparseable: bool = field(default=False, metadata={"help": "Drop private records the grammar rejects (counted) instead of aborting."})
    invalid_rows: str = field(default="error", metadata={"help": "Private rows outside the spec's declared domain (a value out of range or not in the category list, a text longer than max_chars, inf): error (abort, showing three), drop (train without them) or clip (truncate texts, clamp numbers; drop what cannot be clipped). Counted in the run folder's private report."})

    def __post_init__(self):
        check_field_types(self, "data")
        if self.invalid_rows not in INVALID_ROWS:
            raise ConfigError(f"data.invalid_rows must be one of {', '.join(INVALID_ROWS)}, got {self.invalid_rows!r}")


@dataclass
class GenerateSection:
    n: int = field(default=200, metadata={"help": "Synthetic records to generate."})
    batch_size: int = field(default=16, metadata={"help": "Records decoded in parallel."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (0: greedy)."})
    field_temperature: dict[str, float] = field(default_factory=dict, metadata={"help": "Records runs: fields sampled at a temperature of their own, e.g. { product_name = 0.4 } (the other fields at generate.temperature); with Private Evolution, its first draw (its variations write every field at evolve.variation_temperature: a cold field there narrows the population, README). Post-processing: no privacy cost."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass."})
    seed: int | None = field(default=None, metadata={"help": "Seed for sampling (None: random)."})
    conditioning_noise: float = field(default=10.0, metadata={"help": "σ of the DP histogram of conditioning values (paid from the budget; unused when spec.conditioning_weights is declared)."})
    max_new_tokens: int = field(default=256, metadata={"help": "Longest generated document, in tokens (text runs; a document cut there is kept and counted)."})
    max_cache_gb: float = field(default=MAX_CACHE_GB, metadata={"help": "Prompts of their own (labels, conditions, variations): rows join the continuous batch only while its KV cache (rows x longest row) stays under this many GiB; a row alone always runs. Raise it on a large GPU, lower it for long prompts on a small machine."})
    dtype: str = field(default="fp32", metadata={"help": "Dtype the LM decodes in: fp32, or bf16 (a bf16 copy of the trained model, its LoRA folded in: half the bytes of weights and KV cache read per token; post-processing, no privacy cost; faster on CPUs and GPUs with native bf16)."})
    guidance_scale: float = field(default=1.0, metadata={"help": "Text runs with labels or a context: classifier-free guidance (log p = log p(x | no labels) + s (log p(x | labels) - log p(x | no labels))); s > 1 follows the labels more closely, 1 = off. Post-processing of the trained model (no privacy cost); each document decodes a second row."})

    def __post_init__(self):
        check_field_types(self, "generate")
        if self.n < 1:
            raise ConfigError(f"generate.n must be >= 1, got {self.n}")
        if self.batch_size < 1:
            raise ConfigError(f"generate.batch_size must be >= 1, got {self.batch_size}")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ConfigError(f"generate.temperature must be a finite number >= 0, got {self.temperature}")
        for name, value in self.field_temperature.items():
            if not is_temperature(value):
                raise ConfigError(f"generate.field_temperature.{name} must be a finite number >= 0 (0: greedy), got {value!r}")
        if self.max_new_tokens < 2:
            raise ConfigError(f"generate.max_new_tokens must be >= 2, got {self.max_new_tokens}")
        if not (math.isfinite(self.max_cache_gb) and self.max_cache_gb > 0):
            raise ConfigError(f"generate.max_cache_gb must be a finite number > 0, got {self.max_cache_gb}")
        if self.dtype not in ("fp32", "bf16"):
            raise ConfigError(f"generate.dtype must be fp32 or bf16, got {self.dtype!r}")
        if not (math.isfinite(self.guidance_scale) and self.guidance_scale >= 0):
            raise ConfigError(f"generate.guidance_scale must be a finite number >= 0 (1 = off), got {self.guidance_scale}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"generate.top_p must be in (0, 1], got {self.top_p}")
        if not (math.isfinite(self.conditioning_noise) and self.conditioning_noise > 0):
            raise ConfigError(f"generate.conditioning_noise must be a finite number > 0, got {self.conditioning_noise}")


@dataclass
class OutputSection:
    dir: str = field(default="runs/synth", metadata={"help": "Run folder: checkpoints, generator, reports; the export goes to <dir>/export."})
    format: str = field(default="csv", metadata={"help": "Export format: csv, jsonl, parquet, or hf (a Hugging Face datasets folder, save_to_disk, with the card as its dataset card; the command to push it to the Hub is printed in the card, never run)."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing export folder."})

    def __post_init__(self):
        from .export import FORMATS

        check_field_types(self, "output")
        if self.format not in FORMATS:
            raise ConfigError(f"output.format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if not self.dir:
            raise ConfigError("output.dir must name a folder")


COLUMN_ROADS = ("lm", *MECHANISMS)  # lm: no column model


@dataclass
class ColumnsSection:
    """How a record's categorical and numeric columns are made (records runs)."""
    model: str = field(default="lm", metadata={"help": "lm: every column through the DP LM (as text); aim: a DP marginal model (AIM, mbi) for the categorical and numeric columns, the DP LM only for the text columns, written given them (a table without text skips the LM); mst: the same with MST (one spanning tree of pairs: faster, weaker on non-tree dependencies); pairs: the same with every pair marginal measured once with Gaussian noise, no selection, so the run keeps train.accountant (PRV) where AIM and MST force RDP: for tables with few non-text columns, see the README's Water table."})
    budget_share: float = field(default=0.5, metadata={"help": "model = aim, mst or pairs with text columns: the share of the ε left after the domain estimates that the column model alone would spend (the LM's σ is then calibrated so the whole run reaches the target: at 0.5 it rises about 5 percent, bench/budget_share.py); a table without text gives the column model all of it."})
    max_model_size: float = field(default=80.0, metadata={"help": "AIM: largest graphical model, in MB (runtime grows with it)."})
    max_cells: int = field(default=10_000, metadata={"help": "AIM: pair marginals with more cells than this are left out of the workload."})
    rounds: int | None = field(default=None, metadata={"help": f"AIM: rounds the budget is planned for (default {ROUNDS_PER_COLUMN} × columns, where AIM's paper has 16: better at small N, see the README's census table; annealing ends sooner)."})
    pgm_iters: int = field(default=1000, metadata={"help": "AIM: mirror-descent iterations of each graphical-model refit."})
    coarse_groups: int = field(default=8, metadata={"help": "AIM: every pair with a number binned finer than this is also offered with the number's adjacent bins summed into this many groups, a marginal with fewer cells that AIM can afford at a small ρ; MST and pairs measure a pair coarse where only the coarse marginal fits max_cells (0: off, as in the papers; see the README's census and Water tables)."})

    def __post_init__(self):
        check_field_types(self, "columns")
        if self.coarse_groups < 0 or self.coarse_groups == 1:
            raise ConfigError(f"columns.coarse_groups must be 0 (off) or >= 2, got {self.coarse_groups}")
        if self.model not in COLUMN_ROADS:
            raise ConfigError(f"columns.model must be one of {', '.join(COLUMN_ROADS)}, got {self.model!r}")
        if not 0 < self.budget_share < 1:
            raise ConfigError(f"columns.budget_share must be in (0, 1), got {self.budget_share}")
        for name in ("max_cells", "pgm_iters"):
            if getattr(self, name) < 1:
                raise ConfigError(f"columns.{name} must be >= 1, got {getattr(self, name)}")
        if self.rounds is not None and self.rounds < 1:
            raise ConfigError(f"columns.rounds must be >= 1, got {self.rounds}")
        if not self.max_model_size > 0:
            raise ConfigError(f"columns.max_model_size must be > 0, got {self.max_model_size}")

    def settings(self):
        from .marginals import ColumnModelSettings

        return ColumnModelSettings(max_model_size=self.max_model_size, max_cells=self.max_cells, rounds=self.rounds,
                                   pgm_iters=self.pgm_iters, coarse_groups=self.coarse_groups or None)


EVOLVE_ROADS = ("fine-tune", "evolve", "fine-tune+evolve")


@dataclass
class EvolveSection:
    """Private Evolution for records and documents (synth/evolution; synth/records/evolve_road.py,
    synth/text/evolve_road.py)."""
    road: str = field(default="fine-tune", metadata={"help": "fine-tune: DP-SGD on the LM, then sampling; evolve: Private Evolution with the public model as the random and variation model (no DP training; the population of generate.n records or documents after the last noisy histogram is the synthetic data); fine-tune+evolve: DP fine-tuning with budget_share of the ε, then evolve with the fine-tuned model."})
    iterations: int = field(default=5, metadata={"help": "Noisy nearest-neighbour histograms (PE iterations), each paid from the budget."})
    k: int = field(default=1, metadata={"help": "Candidates each private record or document votes for (each gets 1/√k: the vote's L2 norm stays 1)."})
    threshold_sigmas: float = field(default=2.0, metadata={"help": "Noisy vote counts below this many σ are zeroed before resampling."})
    user_votes: str = field(default="split", metadata={"help": "User level: split (a user's rows share one vote of norm 1) or one (one random row per user votes)."})
    budget_share: float = field(default=0.5, metadata={"help": "fine-tune+evolve: the share of the ε left after the domain estimates that DP fine-tuning may reach; the histograms get the rest."})
    variation_temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of the variation model (how far a child strays from its parent)."})
    record_variation: str = field(default="fields", metadata={"help": "Records: how a child is made from its parent. fields: a random subset of the parent's fields is written anew by the model under its own training prompt, the others pinned in the grammar (so the DP-fine-tuned model varies records in the form it learnt); rewrite: the model is shown the whole parent in an instruction prompt and writes another record."})
    field_weight: float = field(default=0.0, metadata={"help": "Records: the weight of the non-text fields (categories over their public lists, numbers by their place in the public range) beside the MiniLM text embedding when private records vote; 0 = the text embedding alone, 1 = the fields' mean agreement counts as much as the text's cosine similarity."})
    variations: int = field(default=1, metadata={"help": "Children each drawn parent gets in the next pool of candidates; the pool (generate.n x (variations + keep_parents)) votes, and generate.n parents are drawn from it."})
    keep_parents: bool = field(default=False, metadata={"help": "The drawn parents stay in the next pool beside their children, so a candidate the votes favour is not lost to its variation (Aug-PE's selection); the pool grows by generate.n."})
    fields_changed: float = field(default=0.5, metadata={"help": "Records, record_variation = fields: the chance that each field is written anew (at least one is)."})

    def __post_init__(self):
        from .evolution import EvolutionSettings

        check_field_types(self, "evolve")
        if self.road not in EVOLVE_ROADS:
            raise ConfigError(f"evolve.road must be one of {', '.join(EVOLVE_ROADS)}, got {self.road!r}")
        if not 0 < self.budget_share < 1:
            raise ConfigError(f"evolve.budget_share must be in (0, 1), got {self.budget_share}")
        if not (math.isfinite(self.variation_temperature) and self.variation_temperature > 0):
            raise ConfigError(f"evolve.variation_temperature must be a finite number > 0, got {self.variation_temperature}")
        if self.record_variation not in ("fields", "rewrite"):
            raise ConfigError(f"evolve.record_variation must be fields or rewrite, got {self.record_variation!r}")
        if not (math.isfinite(self.field_weight) and self.field_weight >= 0):
            raise ConfigError(f"evolve.field_weight must be a finite number >= 0, got {self.field_weight}")
        if not (math.isfinite(self.fields_changed) and 0 < self.fields_changed <= 1):
            raise ConfigError(f"evolve.fields_changed must be in (0, 1], got {self.fields_changed}")
        if self.user_votes not in ("split", "one"):
            raise ConfigError(f"evolve.user_votes must be split or one, got {self.user_votes!r}")
        EvolutionSettings(population=max(self.k, 1), iterations=self.iterations, k=self.k,
                          threshold_sigmas=self.threshold_sigmas, variations=self.variations).check()

    def settings(self, population: int):
        from .evolution import EvolutionSettings

        return EvolutionSettings(population=population, iterations=self.iterations, k=self.k,
                                 threshold_sigmas=self.threshold_sigmas, user_votes=self.user_votes,
                                 variations=self.variations, keep_parents=self.keep_parents)


SECTIONS = {"data": DataSection, "model": ModelChoice, "train": TrainConfig, "generate": GenerateSection, "output": OutputSection,
            "columns": ColumnsSection, "evolve": EvolveSection}


@dataclass
class SynthConfig:
    data: DataSection
    spec: DatasetSpec
    model: ModelChoice
    train: TrainConfig
    generate: GenerateSection
    output: OutputSection
    evaluation: dict[str, Any] | None = None  # an [evaluation] table: score the export after `dpsynth run`
    text: TextSpec | None = None  # a [text] table: a corpus of documents (then spec is its labels + text)
    images: ImagesSpec | None = None  # an [images] table: an imagefolder (then model is a UNetChoice)
    albums: AlbumsSpec | None = None  # an [albums] table: an album folder (model: the LMs, image_model: the UNet)
    image_model: UNetChoice | None = None
    columns: ColumnsSection = field(default_factory=ColumnsSection)
    evolve: EvolveSection = field(default_factory=EvolveSection)

    @property
    def kind(self) -> str:
        for kind in ("text", "images", "albums"):
            if getattr(self, kind) is not None:
                return kind
        return "records"


# the ε a run targets when the config gives neither target_epsilon nor noise_multiplier
DEFAULT_TARGET_EPSILON = 8.0
# (section, key) of every path a config holds: resolved against the config file's folder
PATH_KEYS = (("data", "path"), ("data", "spec"), ("spec", "grammar"), ("output", "dir"), ("evaluation", "grammar"),
             ("images", "prompts"), ("images", "public_images"), ("albums", "public_images"))
# [model] of an images run: what the UNet is conditioned on comes from [images], not from here
IMAGE_MODEL_DERIVED = ("classes", "captions")


def resolve_paths(raw: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """The config with every relative path in it made relative to ``base_dir`` (the config's folder),
    so that `dpsynth run sub/c.toml` reads sub/water.csv whatever the current directory."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for section, key in PATH_KEYS:
        value = out.get(section, {}).get(key) if isinstance(out.get(section), dict) else None
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            out[section][key] = str(base_dir / value)
    for section, key in (("model", "model"), ("image_model", "model"), ("albums", "captioner"),
                         ("albums", "summariser"), ("albums", "image_pipeline")):
        model = out.get(section, {}).get(key) if isinstance(out.get(section), dict) else None
        if isinstance(model, str) and not Path(model).is_absolute() and (base_dir / model).is_dir():
            out[section][key] = str(base_dir / model)  # a local model folder (not a preset, scratch or a hub id)
    return out


def build_config(raw: dict[str, Any], overrides: dict[str, Any] | None = None, *, base_dir: Path | None = None) -> SynthConfig:
    """Validate a config mapping (from a file) plus ``section.field`` overrides into a SynthConfig.

    Relative paths in ``raw`` are taken against ``base_dir`` (the config file's folder, when given);
    paths in ``overrides`` (typed on the command line) against the current directory."""
    raw = resolve_paths(raw, base_dir) if base_dir is not None else {
        k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        raw.setdefault(section, {})[key] = value
    valid = [*SECTIONS, "spec", "evaluation", "text", "images", "albums", "image_model"]
    for key in raw:
        if key not in valid:
            raise ConfigError(f"unknown config section {key!r}{nearest_key_hint(key, valid)}")
    images = ImagesSpec.from_dict(raw["images"]) if "images" in raw else None
    albums = AlbumsSpec.from_dict(raw["albums"]) if "albums" in raw else None
    if sum(k in raw for k in ("spec", "text", "images", "albums")) > 1:
        raise ConfigError("give one of [spec] (records), [text] (a corpus), [images] (an imagefolder) or [albums] "
                          "(an album folder)")
    image_model = None
    if "image_model" in raw and albums is None:
        raise ConfigError("[image_model] belongs to an [albums] run (an [images] run's UNet is [model])")
    if albums is not None:
        values = raw.get("image_model", {})
        if derived := [k for k in IMAGE_MODEL_DERIVED if k in values]:
            raise ConfigError(f"image_model.{derived[0]}: album photos are always caption-conditional")
        unknown = [k for k in values if k not in {f.name for f in fields(UNetChoice)}]
        if unknown:
            raise ConfigError(f"unknown key image_model.{unknown[0]}{nearest_key_hint(unknown[0], [f.name for f in fields(UNetChoice)])}")
        image_model = UNetChoice(**{**values, "captions": True})
    built = {}
    for name, cls in SECTIONS.items():
        values = raw.get(name, {})
        if name == "model" and images is not None:
            cls = UNetChoice
            if derived := [k for k in IMAGE_MODEL_DERIVED if k in values]:
                raise ConfigError(f"model.{derived[0]}: set images.conditioning (and images.classes) instead")
            values = {**values, "classes": images.classes, "captions": images.conditioning == "caption"}
        names = [f.name for f in fields(cls)]
        for key in values:
            if key not in names:
                raise ConfigError(f"unknown key {name}.{key}{nearest_key_hint(key, names)}")
        if name == "train" and not {"target_epsilon", "noise_multiplier", "non_private"} & set(values):
            values = {**values, "target_epsilon": DEFAULT_TARGET_EPSILON}
        built[name] = cls(**values)
    text = None
    if albums is not None:
        spec = albums.length_spec()
    elif images is not None:
        if raw.get("data", {}).get("spec"):
            raise ConfigError("data.spec describes records; an [images] run reads an imagefolder")
        spec = images.as_dataset_spec()
    elif "text" in raw:
        if "spec" in raw or built["data"].spec:
            raise ConfigError("give [spec] (records) or [text] (a corpus of documents), not both")
        text = TextSpec.from_dict(raw["text"])
        # with estimated label lists the conditioning spec is only known after the estimates (text pipeline)
        spec = text.domain_spec() if text.estimated_labels else text.as_dataset_spec()
    elif "spec" in raw:
        spec = DatasetSpec.from_dict(raw["spec"])
    elif built["data"].spec:
        spec = DatasetSpec.from_file(Path(built["data"].spec))
    else:
        raise ConfigError("no dataset spec: give a [spec] section or data.spec = 'path/to/spec.yaml'")
    if not built["data"].path:
        raise ConfigError("data.path is required: the private data set to synthesise")
    if built["columns"].model != "lm" and (text is not None or images is not None or albums is not None):
        raise ConfigError(f"columns.model = {built['columns'].model} is for records runs ([spec]): text, image and album runs have no "
                          "table of categorical columns to model")
    if built["evolve"].road != "fine-tune":
        if images is not None or albums is not None:
            raise ConfigError(f"evolve.road = {built['evolve'].road} is for records and text runs; image and "
                              "album runs fine-tune")
        if text is not None and text.context:
            raise ConfigError(f"evolve.road = {built['evolve'].road} does not vary documents with a context column "
                              f"(text.context = {text.context!r}): use the fine-tune road")
        if built["columns"].model != "lm":
            raise ConfigError(f"evolve.road = {built['evolve'].road} evolves whole records with the LM: it does not "
                              f"combine with columns.model = {built['columns'].model}")
        if text is None and spec.conditioning:
            raise ConfigError("evolve.road evolves whole records: spec.conditioning is for the fine-tune road")
        if text is None and spec.grammar and built["evolve"].record_variation == "fields":
            raise ConfigError(f"evolve.record_variation = fields pins fields in the grammar derived from the spec, not in "
                              f"your grammar (spec.grammar = {spec.grammar!r}): set evolve.record_variation = "
                              "\"rewrite\" (the model rewrites whole records under your grammar)")
        if built["evolve"].k > built["generate"].n:
            raise ConfigError(f"evolve.k ({built['evolve'].k}) exceeds the population generate.n ({built['generate'].n})")
    if built["generate"].guidance_scale != 1.0:
        if text is None:
            raise ConfigError("generate.guidance_scale guides a text run's documents towards their labels; records "
                              "runs do not take it (an images run's guidance is images.guidance_scale)")
        if not (text.labels or text.context):
            raise ConfigError("generate.guidance_scale guides documents towards their labels or context, and "
                              "[text] declares neither: leave it at 1")
    if built["generate"].field_temperature:
        _check_field_temperature(built["generate"].field_temperature, spec, built["columns"].model,
                                 records=text is None and images is None and albums is None)
    evaluation = raw.get("evaluation")
    if evaluation is not None:
        from evaluation import EvalSpec

        EvalSpec.from_dict({"spec": {"columns": spec.names}, "evaluation": evaluation})  # unknown keys fail now
    if (text is not None or images is not None or albums is not None) and evaluation is not None:
        raise ConfigError("[evaluation] scores records; text and image runs are scored with `dpsynth evaluate`")
    return SynthConfig(spec=spec, evaluation=evaluation, text=text, images=images, albums=albums,
                       image_model=image_model, **built)


def _check_field_temperature(field_temperature: dict[str, float], spec: DatasetSpec, column_model: str, *,
                             records: bool) -> None:
    """generate.field_temperature names fields the records LM writes, in the spec's own grammar."""
    if not records:
        raise ConfigError("generate.field_temperature sets the temperature of a record's fields: records runs "
                          "([spec]) only; use generate.temperature")
    if spec.grammar:
        raise ConfigError(f"generate.field_temperature follows the records the spec's own grammar writes, not your "
                          f"grammar (spec.grammar = {spec.grammar!r}): use generate.temperature")
    if column_model == "lm":
        written = spec.body().names
        why = "a conditioning column: its value comes from the prompt, not the LM"
    else:
        written = [c.name for c in spec.columns if c.type == "text"]
        why = f"not written by the LM: columns.model = {column_model} makes it"
    for name in field_temperature:
        if name not in written:
            reason = why if name in spec.names else f"not a column{nearest_key_hint(name, spec.names)}"
            raise ConfigError(f"generate.field_temperature.{name}: {name!r} is {reason}; the fields the LM writes "
                              f"are {', '.join(written) or 'none'}")


def add_flags(parser: argparse.ArgumentParser) -> None:
    """``--section.field`` for every field of every section, with its help and default (the [model]
    group also has the image UNet's fields, and [images] its own)."""
    image_model = [f for f in fields(UNetChoice) if f.name not in {g.name for g in fields(ModelChoice)}
                   and f.name not in IMAGE_MODEL_DERIVED]
    for section, cls in [*SECTIONS.items(), ("images", ImagesSpec), ("albums", AlbumsSpec), ("image_model", UNetChoice)]:
        group = parser.add_argument_group(section)
        hints = {**typing.get_type_hints(cls), **(typing.get_type_hints(UNetChoice) if section == "model" else {})}
        extra = image_model if section == "model" else []
        for f in [*fields(cls), *extra]:
            if _scalar_type(hints[f.name]) not in (str, int, float, bool) or (
                    section == "image_model" and f.name in IMAGE_MODEL_DERIVED):
                continue  # lists and tables: in the config file only
            default = f.default if f.default is not dataclasses.MISSING else None
            if (section, f.name) == ("train", "target_epsilon"):
                default = f"{DEFAULT_TARGET_EPSILON} unless noise_multiplier or non_private is given"
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
