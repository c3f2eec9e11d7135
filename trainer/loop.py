"""DPTrainer: the DP-SGD training loop for Hugging Face causal LMs.

Each step:
  1) draw a Poisson batch of privacy units
  2) for each micro-batch: forward, per-row loss, backward -- the engine clips
     per unit inside backward and accumulates clipped sums in p.grad
  3) add noise once, divide by the expected batch size
  4) optimizer step; the ledger records the step
Checkpoints (weights, optimizer, ledger) are written atomically; ``train()``
resumes from the newest one in ``output_dir``.  Launched with torchrun, the same loop runs on W
ranks (trainer/distributed.py): one global sample split across them, noise once, one all-reduce.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Hashable, Mapping, Sequence

import torch
from torch import Tensor, nn

from .accounting import PrivacyLedger, calibrate_noise_multiplier, epsilon
from .checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    remove_stale_temporaries,
    save_checkpoint,
)
from .config import TrainConfig
from .distributed import (
    Distribution,
    config_fingerprint,
    data_fingerprint,
    digest,
    parameter_fingerprint,
    privatize_across_ranks,
    refuse_wrapped_model,
    row_costs,
    split_units,
)
from .engine import DPEngine
from .errors import AmbiguousRowsError, BudgetExceededError, ConfigError
from .io import folder_lock
from .noise import make_generator, make_generators, privatize_gradients
from .objectives import CausalLM, Objective
from .sampling import PoissonSampler, check_sampler, micro_batches
from .schedule import learning_rate_at
from .seeds import stream_seed


@dataclass
class TrainResult:
    ledger: PrivacyLedger
    steps: int
    losses: list[float] = field(default_factory=list)
    tokens_per_second: float = 0.0

    @property
    def epsilon(self) -> float:
        return self.ledger.epsilon()


class DPTrainer:
    """Train ``model`` on tokenised ``examples`` with DP-SGD.

    Args:
        model: a causal LM returning ``.logits`` (or a tensor) for ``input_ids``.
        examples: dicts with ``input_ids`` and optionally ``loss_mask`` (lists of ints).
        config: the run's TrainConfig.
        units: for user-level privacy, the user of each example.
        pad_token_id: id used to pad micro-batches.
        output_dir: where checkpoints go; None for none.
        ledger: a ledger holding stages already paid for (e.g. DP metadata);
            training is calibrated so that the *total* meets target_epsilon.
        objective: what a row's loss is (default: ``CausalLM(pad_token_id)``; ``Diffusion`` for UNets).
        stage: the ledger stage this training records; every other stage in the ledger is prior
            spend, so several DP models of one run compose in one ledger.
        distribution: the ranks this process trains with (default: the initialised process group
            torchrun set up, or one process).  Every rank passes the same model, examples and config.
    """

    def __init__(
        self,
        model: nn.Module,
        examples: Sequence[Mapping],
        config: TrainConfig,
        *,
        units: Sequence[Hashable] | None = None,
        pad_token_id: int = 0,
        output_dir: str | Path | None = None,
        ledger: PrivacyLedger | None = None,
        objective: Objective | None = None,
        stage: str = "train",
        distribution: Distribution | None = None,
    ):
        _refuse_loader(examples)
        if len(examples) == 0:
            raise ConfigError("no training examples")
        refuse_wrapped_model(model)  # before any collective: DDP & co. reduce behind the engine's back
        self.dist = distribution if distribution is not None else Distribution.current()
        if config.grouped != (units is not None):
            raise ConfigError(f"privacy_unit={config.privacy_unit!r}: units (one per example) are given exactly when "
                              "the unit is a user or a document")
        self.model, self.examples, self.config = model, examples, config
        self.units = list(units) if units is not None else None
        self.pad_token_id = pad_token_id
        self.objective = objective if objective is not None else CausalLM(pad_token_id)
        self.stage = stage
        k = self.objective.rows_per_example
        if k * config.max_examples_per_user > config.physical_batch_size:
            raise ConfigError(f"a unit takes up to {k * config.max_examples_per_user} rows ({k} per example) but "
                              f"physical_batch_size is {config.physical_batch_size}: raise it")
        self.output_dir = Path(output_dir) if output_dir is not None else None
        n_units = len(examples) if units is None else len(set(units))
        if config.expected_batch_size > n_units:
            raise ConfigError(f"expected_batch_size={config.expected_batch_size} exceeds the {n_units} privacy units")
        self.sample_rate = config.expected_batch_size / n_units  # the q the accountant is told
        self.sampler = PoissonSampler(
            n_rows=len(examples),
            sample_rate=self.sample_rate,
            units=units,
            max_rows_per_unit=config.max_examples_per_user,
            seed=config.seed,
        )
        if self.dist.active:  # one global sample: every rank draws from rank 0's sampling stream
            self.dist.check_same("the training config", config_fingerprint(config))
            self.dist.check_same("the training data", data_fingerprint(examples, units))
            self.sampler.reseed(self.dist.broadcast_int(stream_seed(config.seed, "sampler")))
            self.dist.broadcast_module(model)
        self._row_costs = row_costs(examples)  # tokens per row: ranks' shares, micro-batches by length
        self.delta = config.resolve_delta(n_units)
        self.ledger = ledger or PrivacyLedger(delta=self.delta, accountant=config.accountant, privacy_unit=config.privacy_unit,
                                              n_units=n_units)
        if self.ledger.delta != self.delta or self.ledger.accountant != config.accountant:
            raise ConfigError("the given ledger's δ or accountant differs from this run's")
        self.noise_multiplier = self._noise_multiplier()
        if self.dist.active:  # the prior stages (releases before training) set σ: they must agree too
            self.dist.check_same("the privacy ledger before training and σ",
                                 digest((self.ledger.history, self.noise_multiplier)))
        if config.non_private:
            self.ledger.add_caveat("non_private")
        if config.seed is not None:
            self.ledger.add_caveat("insecure_seed")
        self.engine = DPEngine(
            model,
            max_grad_norm=config.max_grad_norm,
            clipping=config.clipping,
            automatic_clipping=config.automatic_clipping,
            norm_method=config.norm_method,
        )
        self.params = self.engine.trainable_parameters
        self._ambiguous_rows: set[int] = set()  # micro-batch sizes the engine refused as ambiguous
        self.optimizer = torch.optim.AdamW(
            list(self.params.values()), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        self.noise_gens = make_generators(config.seed, _device(model))
        objective_stream = f"objective:{self.dist.rank}" if self.dist.active else "objective"  # per rank: other images
        self.objective.setup(make_generator(config.seed, purpose=objective_stream))
        self.step = 0

    def _noise_multiplier(self) -> float:
        c = self.config
        if c.noise_multiplier is not None:
            return float(c.noise_multiplier)
        prior = [h for e, h in zip(self.ledger.events, self.ledger.history, strict=True) if e.stage != self.stage]
        sigma = calibrate_noise_multiplier(
            target_epsilon=c.target_epsilon,
            delta=self.ledger.accountant_delta,
            sample_rate=self.sample_rate,
            steps=c.steps,
            accountant=c.accountant,
            prior=prior,
        )
        planned = epsilon([*prior, (sigma, self.sample_rate, c.steps)], delta=self.ledger.accountant_delta,
                          accountant=c.accountant)
        if planned > c.target_epsilon:  # calibration errs on the safe side; this is the last guard
            raise BudgetExceededError(f"calibrated σ={sigma} would spend ε={planned:.4f} > target {c.target_epsilon}")
        return sigma

    # ------------------------------------------------------------------- steps
    def train(self, *, resume: bool = True, max_steps: int | None = None) -> TrainResult:
        """Run (or continue) training up to ``config.steps``; ``max_steps`` stops early (tests, crashes)."""
        writes = self.output_dir is not None and self.dist.is_main  # rank 0 alone writes the folder
        with folder_lock(self.output_dir) if writes else nullcontext():
            return self._train(resume=resume, max_steps=max_steps)

    def _train(self, *, resume: bool, max_steps: int | None) -> TrainResult:
        if self.output_dir is not None:
            if self.dist.is_main:
                remove_stale_temporaries(self.output_dir)
            if resume:
                self._resume()
        check_sampler(self.sampler, grouped=self.config.grouped, sample_rate=self.sample_rate)
        c = self.config
        end = c.steps if max_steps is None else min(c.steps, self.step + max_steps)
        losses, tokens, t0, start = [], 0, time.perf_counter(), self.step
        last_save = time.monotonic()
        bar = _progress(total=c.steps, initial=self.step, enabled=c.progress and self.dist.is_main)
        eps = self.ledger.epsilon()
        self.model.train()
        while self.step < end:
            loss, n_tok = self._train_step()
            losses.append(loss)
            tokens += n_tok
            self.step += 1
            if self.output_dir is not None and self.dist.is_main:
                _log_step(self.output_dir, self.step, loss)
            if self.dist.active and c.replica_check_every and self.step % c.replica_check_every == 0:
                self._check_replicas()
            if self.step % c.log_every == 0 or self.step in (end, start + 1):
                eps = self.ledger.epsilon()
            rate = tokens / max(1e-9, time.perf_counter() - t0)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", eps=f"{eps:.2f}", tok_s=f"{rate:.0f}")
            due = (c.checkpoint_every and self.step % c.checkpoint_every == 0) or (
                c.checkpoint_minutes and time.monotonic() - last_save >= 60 * c.checkpoint_minutes)
            if self.output_dir is not None and due and self.step < c.steps and self.dist.is_main:
                self.save()
                last_save = time.monotonic()
        bar.close()
        if self.dist.active:
            self._check_replicas()
        if self.output_dir is not None and self.step == c.steps and self.dist.is_main:
            self.save()
        self.dist.barrier()  # no rank goes on before the final checkpoint is written
        if c.target_epsilon is not None and self.ledger.epsilon() > c.target_epsilon:
            raise BudgetExceededError(f"the run spent ε={self.ledger.epsilon():.4f}, more than the target "
                                      f"{c.target_epsilon}: refusing to hand on the model")
        return TrainResult(self.ledger, self.step, losses, tokens / max(1e-9, time.perf_counter() - t0))

    def _train_step(self) -> tuple[float, int]:
        c = self.config
        batch = self.sampler.sample()  # 1) Poisson batch of units (the global one, on W ranks)
        if self.dist.active:  # this rank's whole units
            batch = split_units(batch, self.dist.world_size, self._row_costs)[self.dist.rank]
        losses, n_items = [], 0
        per_micro = c.physical_batch_size // self.objective.rows_per_example  # examples per micro-batch
        for units in micro_batches(batch, per_micro, self._row_costs):  # 2) clipped sums, per micro-batch
            row_loss, items = self._micro_batch(units)
            losses.append(row_loss)
            n_items += items
        privatize = privatize_gradients if not self.dist.active else partial(privatize_across_ranks,
                                                                              distribution=self.dist)
        privatize(  # 3) noise once per logical batch
            self.params.values(),
            noise_multiplier=self.noise_multiplier,
            max_grad_norm=c.max_grad_norm,
            expected_batch_size=self.sampler.expected_batch_size,
            generator=self.noise_gens,
        )
        if c.warmup_steps or c.lr_schedule != "constant":
            lr = learning_rate_at(self.step, base=c.learning_rate, total_steps=c.steps, warmup_steps=c.warmup_steps,
                                  schedule=c.lr_schedule, min_ratio=c.min_lr_ratio)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        self.optimizer.step()  # 4) step, and pay for it
        self.optimizer.zero_grad(set_to_none=True)
        self.engine.new_logical_batch()
        self.ledger.record(
            self.stage,
            noise_multiplier=self.noise_multiplier,
            sample_rate=self.sample_rate,
            max_grad_norm=c.max_grad_norm,
            clipping=c.clipping,
            automatic_clipping=c.automatic_clipping,
            max_examples_per_user=c.max_examples_per_user if c.grouped else None,
        )
        loss_sum, rows = (float(torch.cat(losses).sum()), sum(len(x) for x in losses)) if losses else (0.0, 0)
        loss_sum, rows, n_items = self.dist.sum_scalars([loss_sum, rows, n_items])
        return (loss_sum / rows if rows else math.nan), int(n_items)

    def _micro_batch(self, units: list[list[int]]) -> tuple[Tensor, int]:
        """Forward and backward of one micro-batch; the engine accumulates its clipped sums.

        When the engine finds the row dimension ambiguous (it raises before accumulating
        anything), the same units run again with one zero-weight row more.  A size refused once is
        remembered (the model's shapes repeat: a UNet's 8 x 8 attention makes every 64-row
        micro-batch ambiguous), so later micro-batches of that size add the row at once rather than
        run their forward twice."""
        c, dev = self.config, _device(self.model)
        autocast = torch.autocast(dev.type, dtype=torch.bfloat16) if c.dtype == "bf16" else nullcontext()
        ghost_rows = 0
        while True:
            mb = self.objective.collate(self.examples, units, user_level=c.grouped,
                                        ghost_rows=ghost_rows)
            if mb.n_rows in self._ambiguous_rows and ghost_rows < 2:
                ghost_rows += 1
                continue
            unit_ids = self._unit_ids(units) + [object() for _ in range(ghost_rows)]  # a ghost is its own unit
            try:
                with self.engine.micro_batch(mb.n_rows, mb.unit_index, unit_ids=unit_ids):
                    with autocast:
                        row_loss = self.objective.row_losses(self.model, mb, dev)  # (rows,)
                    row_loss.sum().backward()
            except AmbiguousRowsError:
                if ghost_rows == 2:
                    raise
                self.engine.forget_units(unit_ids)
                self._ambiguous_rows.add(mb.n_rows)
                ghost_rows += 1
                continue
            return row_loss.detach()[: mb.n_rows - ghost_rows], mb.n_items

    def _unit_ids(self, units: list[list[int]]) -> list:
        """Each unit's identity (its user, or its example), for the engine's split-unit check."""
        if self.units is None:
            return [rows[0] for rows in units]
        return [self.units[rows[0]] for rows in units]

    # ------------------------------------------------------------ checkpoints
    def save(self) -> Path:
        state = {"config": asdict(self.config), "noise_multiplier": self.noise_multiplier}
        if self.config.seed is not None:  # only seeded (test) runs keep their generator states
            state.update({f"noise_rng_{i}": g.get_state() for i, g in enumerate(self.noise_gens)})
            state["sampler_rng"] = self.sampler.state_dict()["generator"]
        path = save_checkpoint(
            self.output_dir, step=self.step, params=self.params, optimizer=self.optimizer, ledger=self.ledger, state=state
        )
        prune_checkpoints(self.output_dir, keep=self.config.keep_checkpoints)
        return path

    def _resume(self) -> None:
        """Load the newest checkpoint (rank 0 reads it and hands it to the other ranks)."""
        found = None
        if self.dist.is_main:
            path = latest_checkpoint(self.output_dir)
            if path is not None:
                found = (path, *load_checkpoint(path, params=self.params, optimizer=self.optimizer))
        if self.dist.active:
            found = self.dist.broadcast_object(None if found is None else (*found, self.optimizer.state_dict()))
            if found is None:
                return
            self.dist.broadcast_module(self.model)
            if not self.dist.is_main:
                self.optimizer.load_state_dict(found[3])
            found = found[:3]
        if found is None:
            return
        path, ledger, state = found
        self.ledger.resume_stage(ledger, self.stage, where=f"checkpoint {path}")  # checks the prior stages first
        if state["noise_multiplier"] != self.noise_multiplier:
            raise ConfigError(
                f"checkpoint {path} was trained with σ={state['noise_multiplier']}, this run has "
                f"σ={self.noise_multiplier}: resume with the same config"
            )
        self.step = int(state["step"])
        if "sampler_rng" in state:
            for i, g in enumerate(self.noise_gens):
                if f"noise_rng_{i}" in state:  # a seeded run resumed on a machine with more workers
                    g.set_state(state[f"noise_rng_{i}"])
            self.sampler.load_state_dict({"generator": state["sampler_rng"]})

    def _check_replicas(self) -> None:
        self.dist.check_same(f"the parameters after step {self.step}", parameter_fingerprint(self.params.values()))

    def close(self) -> None:
        """Detach the engine: the model is left exactly as a plain model."""
        self.engine.detach()


def train_model(model: nn.Module, examples: Sequence[Mapping], config: TrainConfig, **kwargs) -> TrainResult:
    """Train (or resume) with DPTrainer and leave the model detached, exactly a plain model again.
    ``kwargs`` go to DPTrainer (units, pad_token_id, output_dir, ledger, objective, stage)."""
    trainer = DPTrainer(model, examples, config, **kwargs)
    try:
        return trainer.train()
    finally:
        trainer.close()


TRAIN_LOG = "train_log.jsonl"  # one line per step: {"step", "loss"}; NOT DP (the loss reads the private batch)


def _log_step(output_dir: Path, step: int, loss: float) -> None:
    """Append the step's loss to the run's training log (a resumed run re-does the steps after its last
    checkpoint: readers keep the last line of each step, see ``read_train_log``)."""
    with open(Path(output_dir) / TRAIN_LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps({"step": step, "loss": loss if math.isfinite(loss) else None}) + "\n")


def read_train_log(output_dir: str | Path) -> list[tuple[int, float]]:
    """(step, loss) in step order, the last entry of each step; [] without a log."""
    path = Path(output_dir) / TRAIN_LOG
    if not path.is_file():
        return []
    by_step = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a crash
            continue
        by_step[int(entry["step"])] = entry["loss"]
    return [(step, loss) for step, loss in sorted(by_step.items()) if loss is not None]


def _refuse_loader(examples) -> None:
    from torch.utils.data import DataLoader

    if isinstance(examples, DataLoader):
        raise ConfigError("DPTrainer takes the examples themselves, not a DataLoader: it draws its own Poisson sample "
                          "of units every step (a shuffling loader or a DistributedSampler gives fixed-size batches "
                          "the accountant's amplification by sampling does not hold for); pass loader.dataset")


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc="DP training (loss: not DP, for your eyes only)", unit="step")
