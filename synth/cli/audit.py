"""`dpsynth audit CONFIG`: empirical lower bound on ε for a run config (one-run audit with canaries).

Trains a fresh generator with the config's DP settings on the private data plus a
coin-chosen half of random canary records (records runs) or canary documents (text runs), then reports AUC, exposure and the
Steinke-Nasr-Jagielski lower bound on ε, next to the accountant's ε.
"""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    from ..run_config import add_flags

    p = sub.add_parser("audit", help="privacy audit: train with canaries, bound ε from below")
    p.add_argument("config", type=Path, help="run config (YAML or TOML), as for `dpsynth run`")
    p.add_argument("--canaries", type=int, default=500, help="canary records, half trained on (default: 500)")
    p.add_argument("--seed", type=int, default=None, help="seed for canaries and coins (default: secure random)")
    add_flags(p)


def run(args) -> int:
    from trainer.errors import ConfigError

    from .run import load, pipeline_for

    config = load(args)
    pipeline = pipeline_for(config)
    if not hasattr(pipeline, "audit"):
        raise ConfigError(f"`dpsynth audit` covers records and text runs; this is a {config.kind} run")
    result = pipeline.audit(config, canaries=args.canaries, seed=args.seed)
    print(result.summary())
    if result.epsilon_lower > result.claimed_epsilon:
        print("warning: the audit's lower bound exceeds the claimed ε: the DP guarantee does not hold as stated")
        return 1
    return 0
