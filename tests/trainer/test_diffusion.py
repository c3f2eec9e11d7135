"""diffusers UNets through the engine: fp64 oracle with noise multiplicity, the Diffusion objective
in DPTrainer, ghost rows, named ledger stages."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainer import DPTrainer, PrivacyLedger, TrainConfig, UnsupportedLayerError
from trainer.objectives import Diffusion

from .helpers import check_against_oracle

diffusers = pytest.importorskip("diffusers")


def tiny_unet(dtype=torch.float64, seed=0):
    """A UNet2DModel with AttnDownBlock2D: its attention hands the convs channels_last tensors."""
    torch.manual_seed(seed)
    return diffusers.UNet2DModel(
        sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4, attention_head_dim=8).to(dtype)


def tiny_conditional_unet(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4, cross_attention_dim=12, attention_head_dim=8).to(dtype)


def _rows(n_images, k, *, conditional=False, seed=0):
    """K fixed (t, ε) draws per image, packed per row: [x_t | ε | t | caption] so the oracle sees the same rows."""
    g = torch.Generator().manual_seed(seed)
    sched = diffusers.DDPMScheduler(num_train_timesteps=100)
    x0 = torch.rand(n_images, 3, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    x0 = x0.repeat_interleave(k, 0)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.randint(0, 100, (x0.shape[0],), generator=g)
    noisy = sched.add_noise(x0, noise, t)
    parts = [noisy.flatten(1), noise.flatten(1), t[:, None].double()]
    if conditional:
        parts.append(torch.randn(x0.shape[0], 5 * 12, generator=g, dtype=torch.float64))  # 5-token captions
    return torch.cat(parts, 1)


def _loss(k, conditional=False):
    def loss(model, rows):
        noisy, noise = rows[:, :192].view(-1, 3, 8, 8), rows[:, 192:384].view(-1, 3, 8, 8)
        t = rows[:, 384].long()
        kw = {"encoder_hidden_states": rows[:, 385:].view(-1, 5, 12)} if conditional else {}
        pred = model(noisy, t, **kw).sample
        return F.mse_loss(pred, noise, reduction="none").flatten(1).mean(1) * 40 / k  # ×40: clipping active
    return loss


@pytest.mark.parametrize("clipping", ["per_layer", "flat"])
@pytest.mark.parametrize("k", [1, 2])
def test_unet_with_attention_matches_the_oracle(clipping, k):
    model = tiny_unet()
    x = _rows(5, k)
    units = [list(range(i * k, (i + 1) * k)) for i in range(5)]  # the K draws of an image are one unit
    micro = [units[:3], units[3:]]
    check_against_oracle(model, _loss(k), x, micro, clipping=clipping)


def test_conditional_unet_matches_the_oracle():
    model = tiny_conditional_unet()
    k = 2
    x = _rows(4, k, conditional=True)
    units = [list(range(i * k, (i + 1) * k)) for i in range(4)]
    for clipping in ("per_layer", "flat"):
        check_against_oracle(model, _loss(k, conditional=True), x, [units[:2], units[2:]], clipping=clipping)


def test_batch_norm_2d_trainable_is_refused_by_name():
    from torch import nn

    from trainer import DPEngine

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(UnsupportedLayerError, match=r"1\.weight \(in a BatchNorm2d\)"):
        DPEngine(model, max_grad_norm=1.0)


def _images(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{"pixel_values": torch.rand(3, 8, 8, generator=g) * 2 - 1} for _ in range(n)]


def test_dp_training_of_a_unet_records_its_own_stage_after_prior_spend():
    ledger = PrivacyLedger(delta=1e-3)
    ledger.record("caption_lm", noise_multiplier=1.0, sample_rate=0.1, steps=20)
    cfg = TrainConfig(target_epsilon=8.0, expected_batch_size=8, physical_batch_size=8, steps=2, progress=False,
                      learning_rate=1e-3, delta=1e-3)
    trainer = DPTrainer(tiny_unet(torch.float32), _images(64), cfg, objective=Diffusion(multiplicity=2),
                        ledger=ledger, stage="unet")
    result = trainer.train()
    assert [e.stage for e in trainer.ledger.events] == ["caption_lm", "unet"]
    assert trainer.ledger.steps("unet") == 2 and result.epsilon <= 8.0
    assert all(torch.isfinite(torch.tensor(result.losses)))


def test_an_ambiguous_micro_batch_runs_again_with_a_ghost_row(monkeypatch):
    """16 rows and a 4x4 attention (16 positions): the engine refuses the layout, the trainer adds one
    zero-weight row and the step goes through; the next 16-row micro-batch gets its ghost row before
    its forward (no second forward); a ghost row changes no clipped sum."""
    cfg = TrainConfig(noise_multiplier=1.0, expected_batch_size=64, physical_batch_size=16, steps=2, progress=False)
    objective = Diffusion(multiplicity=2)
    trainer = DPTrainer(tiny_unet(torch.float32), _images(64), cfg, objective=objective)
    calls, forwards = [], []
    real = objective.collate
    monkeypatch.setattr(objective, "collate", lambda *a, **k: calls.append(k["ghost_rows"]) or real(*a, **k))
    real_losses = objective.row_losses
    monkeypatch.setattr(objective, "row_losses", lambda m, mb, dev: forwards.append(mb.n_rows) or real_losses(m, mb, dev))
    monkeypatch.setattr(trainer.sampler, "sample", lambda: [[i] for i in range(8)])  # 8 images x 2 = 16 rows
    trainer.train()
    assert calls == [0, 1, 0, 1]
    assert forwards == [16, 17, 17]

    # the ghost row contributes nothing: clipped sums with and without one are equal
    from trainer import DPEngine

    model = tiny_unet(torch.float64)
    gen = torch.Generator().manual_seed(0)
    sums = []
    for ghosts in (0, 1):
        objective.setup(torch.Generator().manual_seed(0))
        batch = objective.collate(_images(3), [[0], [1], [2]], user_level=False, ghost_rows=ghosts)
        batch.inputs = {k: v.double() if v.is_floating_point() else v for k, v in batch.inputs.items()}
        batch.extra["noise"] = batch.extra["noise"].double()
        eng = DPEngine(model, max_grad_norm=1e-3)
        with eng.micro_batch(batch.n_rows, batch.unit_index, unit_ids=list(range(batch.n_units))):
            objective.row_losses(model, batch, torch.device("cpu")).sum().backward()
        sums.append(torch.cat([p.grad.flatten() for p in eng.trainable_parameters.values()]))
        eng.detach()
        model.zero_grad(set_to_none=True)
    del gen
    assert torch.allclose(sums[0], sums[1], rtol=1e-10, atol=1e-14)


def test_condition_dropout_replaces_about_p_of_the_rows_and_never_a_ghost_row():
    """Classifier-free guidance training: each row's caption is swapped for the null caption with
    probability p (binomial share within 4 sd), the rest keep their own, ghost rows are untouched."""
    null = {"encoder_hidden_states": torch.zeros(3, 4), "encoder_attention_mask": torch.tensor([True, False, False])}
    obj = Diffusion(diffusers.DDPMScheduler(num_train_timesteps=10), multiplicity=2, condition_dropout=0.25,
                    null_condition=null)
    obj.setup(torch.Generator().manual_seed(0))
    examples = [{"pixel_values": torch.zeros(3, 4, 4), "encoder_hidden_states": torch.full((3, 4), float(i + 1)),
                 "encoder_attention_mask": torch.ones(3, dtype=torch.bool)} for i in range(500)]
    batch = obj.collate(examples, [[i] for i in range(500)], user_level=False, ghost_rows=3)
    hidden, mask = batch.inputs["encoder_hidden_states"], batch.inputs["encoder_attention_mask"]
    dropped = (hidden == 0).all(dim=(1, 2))
    n = 1000
    assert abs(float(dropped[:n].float().mean()) - 0.25) < 4 * (0.25 * 0.75 / n) ** 0.5
    assert torch.equal(mask[dropped], null["encoder_attention_mask"].expand(int(dropped.sum()), 3))
    kept_ids = torch.arange(n)[~dropped[:n]] // 2  # each image's 2 rows carry that image's own caption
    assert torch.equal(hidden[:n][~dropped[:n]][:, 0, 0], (kept_ids + 1).float())
    assert not dropped[n:].any()
    with pytest.raises(ValueError, match="needs null_condition"):
        Diffusion(condition_dropout=0.1)
