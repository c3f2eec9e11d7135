"""Data-parallel DP-SGD across ranks (``torchrun``): dpsynth owns the reduction, no DDP wrapper.

Every step, on W ranks:

1. one *global* Poisson sample of units: every rank draws the same one, from a sampler stream
   whose seed rank 0 broadcast once (so no seeding habit can give the shards correlated masks);
2. the sample is split across ranks by whole units (a user never spans two ranks), balanced by
   tokens; a rank with no unit runs no forward and contributes zeros;
3. each rank accumulates the clipped sums of its share (the engine, as on one process);
4. rank 0 alone adds N(0, σ²C²) to its local sum, the others add nothing, so the noise is drawn
   exactly once whatever the ranks' generators hold;
5. one SUM all-reduce of the sums (fp32 buckets), then every rank divides by the global q·N.

The released gradient is the one-process one for the same sample; the accountant's q is the
global one and the ledger is identical for 1 and W ranks.  Replicas end each step with identical
parameters, and a fingerprint compared every ``replica_check_every`` steps fails loudly if they
ever drift.  Checkpoints and logs are written by rank 0; a resumed run loads on rank 0 and
broadcasts, so ranks need not share a file system to resume.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import nn

from .errors import ConfigError, DPSynthError

BUCKET_FLOATS = 1 << 24  # 64 MiB of fp32 per all-reduce call

WRAPPERS = {  # class name -> what to do instead
    "DistributedDataParallel": "DDP averages gradients as SUM/W and never sees the engine's clipped sums",
    "DataParallel": "DataParallel replicas write gradients the engine never clipped per unit",
    "FullyShardedDataParallel": "FSDP shards parameters the engine cannot clip per unit (not supported yet)",
    "FSDPModule": "FSDP shards parameters the engine cannot clip per unit (not supported yet)",
    "DeepSpeedEngine": "DeepSpeed reduces gradients itself (not supported yet)",
}


class ReplicaDivergenceError(DPSynthError, RuntimeError):
    """The ranks' parameters (or inputs) differ where the algorithm makes them identical."""


def refuse_wrapped_model(model: nn.Module) -> None:
    """A data-parallel wrapper would reduce gradients behind the engine's back: refuse it by name."""
    for name, module in model.named_modules():
        why = WRAPPERS.get(type(module).__name__)
        if why is not None:
            where = f" (at {name!r})" if name else ""
            raise ConfigError(f"the model is wrapped in {type(module).__name__}{where}: {why}. Pass the plain model "
                              "and launch with torchrun: dpsynth's trainer does the all-reduce itself, with the noise "
                              "added once, so the guarantee is exactly the one-process one")


@dataclass(frozen=True)
class Distribution:
    """Where this process stands among the ranks (W = 1: one process, every call a no-op)."""

    rank: int = 0
    world_size: int = 1

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def current(cls) -> "Distribution":
        """The initialised default process group, or one process."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    # -------------------------------------------------------------- collectives
    def broadcast_int(self, value: int) -> int:
        """Rank 0's ``value`` on every rank (a 63-bit seed, a step count)."""
        if not self.active:
            return int(value)
        import torch.distributed as dist

        t = torch.tensor([int(value)], dtype=torch.int64, device=_comm_device())
        dist.broadcast(t, src=0)
        return int(t.item())

    def broadcast_object(self, obj):
        """Rank 0's picklable ``obj`` on every rank."""
        if not self.active:
            return obj
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=_comm_device())
        return box[0]

    @torch.no_grad()
    def broadcast_module(self, model: nn.Module) -> None:
        """Rank 0's parameters and buffers on every rank (replicas start identical)."""
        if not self.active:
            return
        import torch.distributed as dist

        for t in [*model.parameters(), *model.buffers()]:
            dist.broadcast(t.data, src=0)

    @torch.no_grad()
    def all_reduce_sum(self, tensors: Sequence[torch.Tensor]) -> None:
        """In place: every tensor becomes the SUM over ranks, reduced in buckets of whole tensors: fp32
        (fp64 for fp64 tensors, which an fp32 sum would round)."""
        if not self.active:
            return
        import torch.distributed as dist

        bucket: list[torch.Tensor] = []
        size = 0
        for t in [*tensors, None]:
            if t is not None and bucket and (size + t.numel() > BUCKET_FLOATS or t.device != bucket[0].device
                                             or _bucket_dtype(t) != _bucket_dtype(bucket[0])):
                _reduce_bucket(bucket, dist)
                bucket, size = [], 0
            if t is None:
                if bucket:
                    _reduce_bucket(bucket, dist)
                break
            bucket.append(t)
            size += t.numel()

    def sum_scalars(self, values: Sequence[float]) -> list[float]:
        """The SUM over ranks of a few numbers (loss sums, counts)."""
        if not self.active:
            return [float(v) for v in values]
        import torch.distributed as dist

        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_comm_device())
        dist.all_reduce(t)
        return t.tolist()

    def check_same(self, what: str, fingerprint: int) -> None:
        """Raise on every rank unless all ranks hold the same ``fingerprint`` of ``what``."""
        if not self.active:
            return
        import torch.distributed as dist

        mine = torch.tensor([fingerprint & ((1 << 62) - 1)], dtype=torch.int64, device=_comm_device())
        seen = [torch.zeros_like(mine) for _ in range(self.world_size)]
        dist.all_gather(seen, mine)
        values = [int(s.item()) for s in seen]
        if len(set(values)) > 1:
            differ = [r for r, v in enumerate(values) if v != values[0]]
            raise ReplicaDivergenceError(f"{what} differs between the ranks (rank 0 vs ranks {differ}): every rank "
                                         "must train the same model on the same data with the same config")

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()


def _bucket_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _reduce_bucket(bucket: list[torch.Tensor], dist) -> None:
    flat = torch.cat([t.reshape(-1).to(_bucket_dtype(bucket[0])) for t in bucket])
    dist.all_reduce(flat)
    offset = 0
    for t in bucket:
        t.copy_(flat[offset: offset + t.numel()].view_as(t))
        offset += t.numel()


def _comm_device() -> torch.device:
    """Where small control tensors live: the current GPU under NCCL, else the CPU."""
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def init_from_env(timeout_minutes: float = 30.0) -> Distribution:
    """Join the process group ``torchrun`` (or ``accelerate launch``) describes in the environment:
    NCCL when this process has a GPU, gloo otherwise; one process when WORLD_SIZE is unset or 1."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return Distribution.current()
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Distribution()
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {', '.join(missing)} unset: launch with "
                          "torchrun --nproc_per_node=W (it sets them)")
    backend = "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "nccl"
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes))
    return Distribution.current()


# ------------------------------------------------------------------ the step
@torch.no_grad()
def privatize_across_ranks(params: Iterable[nn.Parameter], *, noise_multiplier: float, max_grad_norm: float,
                           expected_batch_size: float, generator, distribution: Distribution) -> None:
    """The W-rank twin of ``noise.privatize_gradients``: noise once (rank 0, on its local sum), one
    SUM all-reduce, then the division by the global expected batch size q·N on every rank."""
    from .noise import add_noise_to_sums

    if expected_batch_size <= 0:
        raise ValueError(f"expected_batch_size must be > 0, got {expected_batch_size}")
    params = list(params)
    for p in params:
        if p.grad is None:  # a rank with no unit this step contributes zeros
            p.grad = torch.zeros_like(p)
    if distribution.is_main and noise_multiplier > 0:
        add_noise_to_sums(params, noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm,
                          generator=generator)
    distribution.all_reduce_sum([p.grad for p in params])
    for p in params:
        p.grad.div_(expected_batch_size)


def split_units(batch: list[list[int]], world_size: int, cost: Sequence[int]) -> list[list[list[int]]]:
    """Whole units to ranks, balanced by ``cost`` (tokens per row): largest unit first to the least
    loaded rank, ties to the lowest rank; within a rank the units keep the sample's order."""
    load = [0] * world_size
    owner: dict[int, int] = {}
    by_size = sorted(range(len(batch)), key=lambda u: -sum(cost[i] for i in batch[u]))
    for u in by_size:
        rank = load.index(min(load))
        owner[u] = rank
        load[rank] += sum(cost[i] for i in batch[u])
    shares: list[list[list[int]]] = [[] for _ in range(world_size)]
    for u, rows in enumerate(batch):
        shares[owner[u]].append(rows)
    return shares


@torch.no_grad()
def parameter_fingerprint(params: Iterable[torch.Tensor]) -> int:
    """An exact checksum of the parameters' bits (any changed bit changes it, bar a collision)."""
    total = 0
    for i, p in enumerate(params):
        t = p.detach().contiguous().reshape(-1)
        bits = t.view(torch.int32) if t.element_size() == 4 else t.view(torch.uint8)
        total = (total * 1_000_003 + int(bits.to(torch.int64).sum().item()) + i) % (1 << 61)
    return total


def data_fingerprint(examples: Sequence, units: Sequence | None) -> int:
    """A digest of what each rank was given: the row count, each row's fields with their lengths and
    first token ids, the units."""
    h = hashlib.sha256(str(len(examples)).encode())
    for ex in examples:
        h.update(repr(sorted((k, _summary(v)) for k, v in ex.items())).encode())
    if units is not None:
        h.update(repr([str(u) for u in units]).encode())
    return int.from_bytes(h.digest()[:8], "big")


def _summary(value) -> tuple:
    if isinstance(value, torch.Tensor):
        return tuple(value.shape), float(value.float().sum())
    if isinstance(value, (list, tuple)):
        return len(value), repr(list(value[:4]))
    return (repr(value)[:64],)


def row_costs(examples: Sequence) -> list[int]:
    """What a row costs to run, for balancing ranks: its tokens, or 1 (an image)."""
    return [len(ex["input_ids"]) if "input_ids" in ex else 1 for ex in examples]


def config_fingerprint(config) -> int:
    """The config as every rank must share it (the seed aside: only rank 0's streams are used)."""
    from dataclasses import asdict

    return digest({k: v for k, v in sorted(asdict(config).items()) if k not in ("seed", "progress")})


def digest(obj) -> int:
    """A 64-bit digest of ``repr(obj)`` (for values whose repr is exact: numbers, strings, tuples)."""
    return int.from_bytes(hashlib.sha256(repr(obj).encode()).digest()[:8], "big")
