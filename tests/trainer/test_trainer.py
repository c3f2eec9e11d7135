"""The training loop: it learns, it accounts, it resumes without losing or double-counting budget."""

from __future__ import annotations

import warnings

import pytest
import torch

from trainer import ConfigError, DPTrainer, TrainConfig
from trainer.checkpoint import latest_checkpoint

from .models import tiny_llama

PATTERN = [5, 6, 7, 8, 9, 10, 11, 12] * 3


def _examples(n=128):
    return [{"input_ids": PATTERN, "loss_mask": [0] * 4 + [1] * (len(PATTERN) - 4)} for _ in range(n)]


def _cfg(**kw):
    base = dict(target_epsilon=8.0, expected_batch_size=32, physical_batch_size=16, steps=6,
                learning_rate=3e-3, seed=0, insecure_seed=True, progress=False, checkpoint_every=2)
    base.update(kw)
    return TrainConfig(**base)


def test_training_learns_and_spends_what_it_says():
    model = tiny_llama(dtype=torch.float32)
    cfg = _cfg(steps=30, learning_rate=1e-2, target_epsilon=50.0)
    trainer = DPTrainer(model, _examples(512), cfg)
    result = trainer.train()
    assert result.losses[-1] < result.losses[0] - 1.0
    assert result.epsilon == pytest.approx(50.0, rel=0.02) and result.epsilon <= 50.0
    assert trainer.ledger.steps() == 30


def test_resume_after_crash_gives_the_same_ledger(tmp_path):
    full = DPTrainer(tiny_llama(dtype=torch.float32), _examples(), _cfg(), output_dir=tmp_path / "a")
    full_result = full.train()

    crashed = DPTrainer(tiny_llama(dtype=torch.float32), _examples(), _cfg(), output_dir=tmp_path / "b")
    crashed.train(max_steps=3)  # "crash" after step 3: the newest checkpoint is step 2
    assert latest_checkpoint(tmp_path / "b").name == "checkpoint-2"
    resumed = DPTrainer(tiny_llama(dtype=torch.float32), _examples(), _cfg(), output_dir=tmp_path / "b")
    result = resumed.train()
    assert result.steps == 6 and resumed.ledger.steps() == 6
    assert resumed.ledger.to_dict() == full.ledger.to_dict()
    assert result.epsilon == full_result.epsilon


def test_resume_with_other_noise_is_refused(tmp_path):
    DPTrainer(tiny_llama(dtype=torch.float32), _examples(), _cfg(), output_dir=tmp_path).train(max_steps=2)
    other = DPTrainer(tiny_llama(dtype=torch.float32), _examples(), _cfg(target_epsilon=2.0), output_dir=tmp_path)
    with pytest.raises(ConfigError, match="resume with the same config"):
        other.train()


def test_a_stage_resumed_from_its_final_checkpoint_stays_in_the_callers_ledger(tmp_path):
    """Two DP models of one run share a ledger.  Rerun after a crash between them: the first stage resumes
    from its last checkpoint (no step runs), and its spend must still be in the ledger the second stage
    calibrates against and the run reports; otherwise the second model gets the whole budget again."""
    from trainer import PrivacyLedger, train_model

    def run(first_dir_done: bool):
        ledger = PrivacyLedger(delta=1e-5)
        train_model(tiny_llama(dtype=torch.float32), _examples(), _cfg(target_epsilon=4.0, delta=1e-5), ledger=ledger,
                    stage="first", output_dir=tmp_path / "first")
        assert [e.stage for e in ledger.events] == ["first"] and ledger.steps("first") == 6
        second = train_model(tiny_llama(dtype=torch.float32), _examples(), _cfg(target_epsilon=8.0, delta=1e-5), ledger=ledger,
                             stage="second")
        return second.ledger, ledger

    before, _ = run(False)
    after, same = run(True)  # "first" resumes from checkpoint-6 of the first run
    assert after is same and after.to_dict() == before.to_dict() and 7.5 < after.epsilon() <= 8.0
    foreign = PrivacyLedger(delta=1e-5)
    foreign.record("histogram", noise_multiplier=3.0, sample_rate=1.0)
    with pytest.raises(ConfigError, match="other prior privacy stages"):
        train_model(tiny_llama(dtype=torch.float32), _examples(), _cfg(target_epsilon=4.0, delta=1e-5), ledger=foreign,
                    stage="first", output_dir=tmp_path / "first")


def test_user_level_training_runs_and_records_unit():
    users = [i // 4 for i in range(128)]  # 32 users, 4 rows each
    cfg = _cfg(privacy_unit="user", max_examples_per_user=2, expected_batch_size=8, steps=2)
    trainer = DPTrainer(tiny_llama(dtype=torch.float32), _examples(), cfg, units=users)
    trainer.train()
    assert trainer.sampler.n_units == 32 and trainer.ledger.privacy_unit == "user"
    assert trainer.ledger.events[0].details["max_examples_per_user"] == 2


def test_bf16_autocast_step_runs():
    trainer = DPTrainer(tiny_llama(dtype=torch.float32), _examples(), _cfg(dtype="bf16", steps=2))
    result = trainer.train()
    assert all(torch.isfinite(torch.tensor(result.losses)))
    assert all(p.dtype == torch.float32 for p in trainer.params.values())


def test_config_checks():
    with pytest.raises(ConfigError, match="exactly one"):
        TrainConfig(target_epsilon=1.0, noise_multiplier=1.0)
    with pytest.raises(ConfigError, match="clipping"):
        TrainConfig(noise_multiplier=1.0, clipping="both")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        TrainConfig(noise_multiplier=1.0, delta=0.01).resolve_delta(1000)
    assert any("1/N" in str(x.message) for x in w)


def test_checkpoints_by_default_on_a_time_cadence_keeping_the_last_k(tmp_path, monkeypatch):
    assert TrainConfig(target_epsilon=4.0).checkpoint_minutes > 0 and TrainConfig(target_epsilon=4.0).checkpoint_every == 0
    stale = tmp_path / ".checkpoint-3.tmp-abc"  # what a SIGKILL mid-write leaves behind
    stale.mkdir(parents=True)
    clock = iter(range(0, 10_000, 120))  # every step "takes" two minutes
    monkeypatch.setattr("trainer.loop.time.monotonic", lambda: next(clock))
    cfg = _cfg(checkpoint_every=0, checkpoint_minutes=3.0, keep_checkpoints=2, steps=6)
    trainer = DPTrainer(tiny_llama(dtype=torch.float32), _examples(), cfg, output_dir=tmp_path)
    trainer.train(max_steps=5)  # killed after step 5 of 6
    kept = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("checkpoint-"))
    assert len(kept) == 2 and latest_checkpoint(tmp_path).name != "checkpoint-0" and not stale.exists()
    resumed = DPTrainer(tiny_llama(dtype=torch.float32), _examples(), cfg, output_dir=tmp_path)
    resumed.train()
    assert resumed.ledger.steps() == 6
