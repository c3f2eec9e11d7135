"""A pipeline under ``torchrun``: rank 0 runs it, the other ranks join its DP-SGD and nothing else.

Rank 0 holds the run folder (its lock, ``--overwrite``), makes the releases that come before
training (DP domain estimates, the conditioning histogram: paid once and kept in the run folder)
and then opens the gate.  The other ranks wait at the gate, read those releases from the run folder
(they never make one of their own), build the same model and examples and train with rank 0
(``trainer/distributed.py``: one global sample, noise once, one all-reduce).  After training, rank 0
alone saves the generator, generates and exports; the others return.  The run folder must be on a
file system every rank sees (one machine, or a shared mount across machines).
"""

from __future__ import annotations

from pathlib import Path

from trainer.distributed import Distribution

# roads whose training is DP-SGD on the LM; the others are refused under torchrun, by name
SUPPORTED = "records with the DP LM (columns.model = \"lm\") and text, on the fine-tune road (evolve.road = \"fine-tune\")"


def ranks() -> Distribution:
    return Distribution.current()


def is_worker() -> bool:
    """A rank other than 0 of a data-parallel run."""
    d = ranks()
    return d.active and not d.is_main


def wait_for_gate() -> None:
    """Workers: wait until rank 0 has cleared the run folder and made the releases before training."""
    if is_worker():
        ranks().barrier()


def open_gate() -> None:
    """Rank 0, right before DP-SGD: the releases are saved in the run folder; let the workers read them."""
    d = ranks()
    if d.active and d.is_main:
        d.barrier()


def refuse_release_on_worker(saved: Path) -> None:
    """A worker must find rank 0's release; making its own would be a second, unaccounted release."""
    if is_worker():
        from trainer.errors import ConfigError

        raise ConfigError(f"rank {ranks().rank} cannot see {saved}, which rank 0 wrote before training: output.dir "
                          "must be on a file system every rank sees")


def check_supported(config) -> None:
    """Refuse, before any work, a road that cannot train across ranks."""
    if not ranks().active:
        return
    from trainer.errors import ConfigError

    road = None
    if config.kind in ("images", "albums"):
        road = f"the {config.kind} road"
    elif config.kind == "records" and config.columns.model != "lm":
        road = f"the column model (columns.model = {config.columns.model!r})"
    elif config.kind in ("records", "text") and config.evolve.road != "fine-tune":
        road = f"Private Evolution (evolve.road = {config.evolve.road!r})"
    if road is not None:
        raise ConfigError(f"{road} does not train across ranks yet; torchrun supports {SUPPORTED}. Run it as one "
                          "process (plain `dpsynth run`)")
