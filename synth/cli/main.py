"""The `dpsynth` command: registers one subcommand per file, nothing else."""

from __future__ import annotations

import argparse
import sys

from . import audit, demo, evaluate, generate, init, run, spec, train

SUBCOMMANDS = {"init": init, "train": train, "generate": generate, "run": run, "evaluate": evaluate, "audit": audit, "demo": demo,
               "spec": spec}


def main(argv: list[str] | None = None) -> int:
    from ..quiet import quiet_third_party

    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv  # anywhere on the line, before or after the subcommand
    argv = [a for a in argv if a != "--verbose"]
    quiet_third_party(verbose)
    parser = argparse.ArgumentParser(prog="dpsynth", description="Differentially private synthetic data.")
    parser.add_argument("--verbose", action="store_true", help="also show third-party notices (library progress "
                        "bars, deprecation warnings) that dpsynth hides by default")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS.values():
        module.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        _join_ranks(args.command)
        return SUBCOMMANDS[args.command].run(args) or 0
    except KeyboardInterrupt:
        print(f"\ndpsynth {args.command}: interrupted. Training resumes from its last checkpoint: run the same "
              "command again (outputs are written atomically, nothing half-written is kept).", file=sys.stderr)
        return 130
    except Exception as err:  # a DPSynthError's message says what to do; show it without a traceback
        from trainer.errors import DPSynthError

        if isinstance(err, DPSynthError):
            print(f"dpsynth {args.command}: error: {err}", file=sys.stderr)
            return 2
        raise


def _join_ranks(command: str) -> None:
    """Under torchrun (WORLD_SIZE > 1): join the process group for `train` and `run`, refuse the rest."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    from trainer.errors import ConfigError

    if command not in ("train", "run"):
        raise ConfigError(f"`dpsynth {command}` runs as one process: launch it without torchrun (only train and run "
                          "train across ranks)")
    from trainer.distributed import init_from_env

    init_from_env()


if __name__ == "__main__":
    sys.exit(main())
