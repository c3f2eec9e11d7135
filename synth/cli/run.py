"""`dpsynth run CONFIG`: train, generate and export in one go (resumes an interrupted training)."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    from ..run_config import add_flags

    p = sub.add_parser("run", help="train + generate + export from one config file (YAML or TOML)")
    p.add_argument("config", type=Path, help="run config: sections data, spec, model, train, generate, output")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export folder")
    p.add_argument("--dry-run", action="store_true", help="print the plan (every stage's σ, q, steps and ε, δ "
                   "against 1/N, what the generator enforces) and stop, training nothing (records runs)")
    p.add_argument("--probe", action="store_true", help="with --dry-run: time one DP-SGD step on the data to "
                   "estimate the training time")
    add_flags(p)


def load(args):
    from ..config_files import read_config
    from ..run_config import build_config, overrides_from

    overrides = overrides_from(args)
    if getattr(args, "overwrite", False):
        overrides["output.overwrite"] = True
    return build_config(read_config(args.config), overrides, base_dir=args.config.parent)


def pipeline_for(config):
    """The library functions (train, generate, run) for the config's kind: records, text or images."""
    if config.kind == "text":
        from ..text import pipeline
    elif config.kind == "images":
        from ..images import pipeline
    elif config.kind == "albums":
        from ..albums import pipeline
    else:
        from .. import pipeline
    return pipeline


def run(args) -> int:
    config = load(args)
    if args.dry_run:
        from ..planning import plan

        print(plan(config, probe=args.probe).summary())
        return 0
    if args.probe:
        from trainer.errors import ConfigError

        raise ConfigError("--probe goes with --dry-run")
    result = pipeline_for(config).run(config)
    if not result.get("worker"):
        report(result)
    return 0


def report(result: dict) -> None:
    import pandas as pd

    if "albums" in result["report"]:
        print(f"\nwrote {result['rows']} synthetic albums ({result['report']['photos']} photos) to {result['export']}/ "
              "(one folder per album, metadata.jsonl; card: README.md, dpsynth.json)")
        print(f"ε spent = {result['epsilon']:.3f} at δ = {result['delta']:.2e} (user level, all stages)")
        for a in result["albums"][:3]:
            print(f"  {a['summary']!r}: {a['captions'][:3]}")
        return
    if "images" in result["report"]:
        print(f"\nwrote {result['rows']} synthetic images to {result['export']}/ (imagefolder: images/, "
              "metadata.jsonl; card: README.md, dpsynth.json)")
        print(f"ε spent = {result['epsilon']:.3f} at δ = {result['delta']:.2e}")
        if len(result["sample"].columns):
            print(result["sample"].to_string(index=False))
        return
    text = "truncated" in result["report"]
    print(f"\nwrote {result['rows']} synthetic {'documents' if text else 'records'} to {result['export']}/ "
          "(card: README.md, dpsynth.json)")
    print(f"ε spent = {result['epsilon']:.3f} at δ = {result['delta']:.2e}")
    r = result["report"]
    if text:
        print(f"cut at max_new_tokens: {r['truncated']}; exact copies of training documents: "
              f"{r['exact_copies_of_training_rows']} (not DP, kept in the run folder's private_report.json)")
    else:
        short = f"; {r['requested'] - r['emitted']} still missing" if r.get("requested", 0) > r["emitted"] else ""
        print(f"drawn again: {r['hit_limit']} did not close within the token budget, {r.get('rejected_by_spec', 0)} "
              f"were rejected by the spec{short}; exact copies of training rows: {r['exact_copies_of_training_rows']} "
              "(not DP, kept in the run folder's private_report.json)")
    with pd.option_context("display.max_colwidth", 60, "display.width", 160):
        print(result["sample"].to_string(index=False))
    if "evaluation" in result:
        print("\n" + result["evaluation"].summary())
        print("evaluation report (not DP, keep it private): <output.dir>/evaluation/report.html")
