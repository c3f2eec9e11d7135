"""Data-parallel scenarios, run by tests/trainer/test_distributed.py under torchrun (gloo, loopback):

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/trainer/dist_worker.py SCENARIO OUT

Each rank writes what it saw to ``OUT/<scenario>_rank<r>.pt``; the test compares the ranks with each
other and with one process (``reference``, which the test runs in its own process).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from trainer import DPTrainer, TrainConfig  # noqa: E402

N_EXAMPLES = 40


class TinyLM(nn.Module):
    """Embedding, a hidden Linear, an LM head: a causal LM in three fp32 layers (fast to import)."""

    def __init__(self, vocab: int = 23, d: int = 12, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.emb, self.hidden, self.head = nn.Embedding(vocab, d), nn.Linear(d, d), nn.Linear(d, vocab)

    def forward(self, input_ids, attention_mask=None, **_):
        return self.head(torch.tanh(self.hidden(self.emb(input_ids))))


def examples(zero_loss: bool = False) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    out = []
    for i in range(N_EXAMPLES):
        n = 3 + i % 7
        ids = torch.randint(0, 23, (n,), generator=g).tolist()
        out.append({"input_ids": ids, "loss_mask": [0] * n if zero_loss else [1] * n})
    return out


def user_units() -> list[str]:
    return [f"user{i // 3}" for i in range(N_EXAMPLES)]


def config(clipping: str = "per_layer", *, user_level: bool = False, private: bool = False, seed: int = 7,
           steps: int = 4, expected_batch_size: int = 8, **extra) -> TrainConfig:
    privacy = {"noise_multiplier": 0.8} if private else {"non_private": True}
    unit = {"privacy_unit": "user", "max_examples_per_user": 2} if user_level else {}
    return TrainConfig(**privacy, **unit, **extra, max_grad_norm=0.05, clipping=clipping, steps=steps,
                       expected_batch_size=expected_batch_size, physical_batch_size=3, learning_rate=0.05,
                       seed=seed, insecure_seed=True, progress=False, replica_check_every=1)


def reference(clipping: str, user_level: bool) -> tuple[dict, list[list[tuple]]]:
    """One process from rank 0's initial weights: final parameters and each step's units."""
    model = TinyLM(seed=100)
    trainer = DPTrainer(model, examples(), config(clipping, user_level=user_level),
                        units=user_units() if user_level else None)
    steps = _record_units(trainer)
    trainer.train()
    trainer.close()
    return {n: p.detach().clone() for n, p in model.named_parameters()}, steps


def _record_units(trainer: DPTrainer) -> list[list[tuple]]:
    """Record the units each step's micro-batches ran on this process."""
    steps: list[list[tuple]] = []
    original = trainer._micro_batch
    seen_step = [-1]

    def micro_batch(units):
        if seen_step[0] != trainer.step:
            seen_step[0] = trainer.step
            steps.append([])
        steps[-1].extend(tuple(u) for u in units)
        return original(units)

    trainer._micro_batch = micro_batch
    sample = trainer.sampler.sample

    def sample_and_mark():  # a step whose share is empty still gets its (empty) entry
        out = sample()
        if seen_step[0] != trainer.step:
            seen_step[0] = trainer.step
            steps.append([])
        return out

    trainer.sampler.sample = sample_and_mark
    return steps


def _train(rank: int, cfg: TrainConfig, **kwargs) -> dict:
    model = TinyLM(seed=100 + rank)  # replicas start different: the trainer broadcasts rank 0's weights
    trainer = DPTrainer(model, examples(), cfg, **kwargs)
    steps = _record_units(trainer)
    result = trainer.train()
    trainer.close()
    return {"params": {n: p.detach().clone() for n, p in model.named_parameters()}, "steps": steps,
            "ledger": sorted({(e.stage, e.noise_multiplier, e.sample_rate) for e in result.ledger.events}),
            "ledger_steps": sum(e.steps for e in result.ledger.events), "epsilon": result.ledger.epsilon(),
            "losses": result.losses}


def suite(rank: int, out: Path) -> dict:
    from torch.nn.parallel import DistributedDataParallel

    from trainer.distributed import Distribution, privatize_across_ranks
    from trainer.errors import ConfigError
    from trainer.noise import make_generators

    got: dict = {}
    seed = 7 if rank == 0 else 1000 + rank  # only rank 0's seed may matter
    got["equal_per_layer_user"] = _train(rank, config("per_layer", user_level=True, seed=seed), units=user_units())
    got["equal_flat"] = _train(rank, config("flat", seed=seed))
    got["noisy"] = _train(rank, config("per_layer", private=True, seed=seed, steps=4), output_dir=out / "noisy")
    got["empty_rank"] = _train(rank, config("flat", seed=seed, expected_batch_size=1, steps=10))
    noise = {}
    dist = Distribution.current()
    for how in ("same", "different", "advanced"):  # how the ranks' noise generators were seeded
        params = [nn.Parameter(torch.zeros(250, 200)), nn.Parameter(torch.zeros(5000))]
        gens = make_generators({"same": 3, "different": 3 + rank, "advanced": 3}[how], n=2)
        if how == "advanced" and rank == 1:
            torch.randn(10, generator=gens[0])
        privatize_across_ranks(params, noise_multiplier=1.3, max_grad_norm=0.7, expected_batch_size=50.0,
                               generator=gens, distribution=dist)
        noise[how] = torch.cat([p.grad.flatten() for p in params])
    got["noise"] = noise
    try:
        DPTrainer(DistributedDataParallel(TinyLM()), examples(), config())
        got["ddp_refusal"] = None
    except ConfigError as e:
        got["ddp_refusal"] = str(e)
    return got


def crash(rank: int, out: Path) -> dict:
    """The `noisy` run, but rank 1 dies in its fourth step (after the checkpoint of step 3)."""
    cfg = config("per_layer", private=True, seed=7 if rank == 0 else 11, steps=4, checkpoint_every=1)
    model = TinyLM(seed=100 + rank)
    trainer = DPTrainer(model, examples(), cfg, output_dir=out / "crashed")
    step = trainer._train_step

    def dying_step():
        if rank == 1 and trainer.step == 3:
            os._exit(3)
        return step()

    trainer._train_step = dying_step
    trainer.train()
    return {}


def resume(rank: int, out: Path) -> dict:
    return _train(rank, config("per_layer", private=True, seed=7 if rank == 0 else 11, steps=4, checkpoint_every=1),
                  output_dir=out / "crashed")


def main() -> None:
    import torch.distributed as dist

    from trainer.distributed import init_from_env

    scenario, out = sys.argv[1], Path(sys.argv[2])
    torch.set_num_threads(1)
    init_from_env(timeout_minutes=1.5)
    rank = dist.get_rank()
    got = {"suite": suite, "crash": crash, "resume": resume}[scenario](rank, out)
    torch.save(got, out / f"{scenario}_rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
