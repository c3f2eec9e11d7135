"""`dpsynth train CONFIG`: DP-train the generator (resumes an interrupted run)."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    from ..run_config import add_flags

    p = sub.add_parser("train", help="DP-train a generator from a config file; saves it in <output.dir>/generator")
    p.add_argument("config", type=Path, help="run config (YAML or TOML)")
    add_flags(p)


def run(args) -> int:
    from ..ranks import is_worker
    from .run import load, pipeline_for

    config = load(args)
    generator, _ = pipeline_for(config).train(config)
    if is_worker():
        return 0
    ledger = generator.ledger
    print(f"\ngenerator saved to {config.output.dir}/generator")
    print(f"ε spent = {ledger.epsilon():.3f} at δ = {ledger.delta:.2e} ({ledger.steps()} steps, accountant {ledger.accountant})")
    return 0
