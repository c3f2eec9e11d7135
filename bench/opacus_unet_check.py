"""Does Opacus compute correct per-sample gradients for a diffusers UNet?  Checked against
one-sample-at-a-time gradients (the oracle), beside dpsynth's engine on the same model.

    python bench/opacus_unet_check.py

Prints, for each clipped weight, whether Opacus' grad_sample matches the oracle, and counts the
conv weights whose per-sample gradients come back all zeros (the channels_last case: diffusers'
attention blocks hand their convs channels_last tensors).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def tiny_unet():
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(16, 32), layers_per_block=1,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                       norm_num_groups=8, attention_head_dim=8).double()


def main():
    from opacus import GradSampleModule

    b = 4
    g = torch.Generator().manual_seed(1)
    noisy, noise = torch.randn(b, 3, 16, 16, generator=g, dtype=torch.float64), torch.randn(b, 3, 16, 16, generator=g, dtype=torch.float64)
    t = torch.randint(0, 1000, (b,), generator=g)

    def rows(m, x, n, tt):
        return F.mse_loss(m(x, tt).sample, n, reduction="none").flatten(1).mean(1)

    model = tiny_unet()
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    oracle = []
    for i in range(b):  # one sample at a time: obviously right
        ref = copy.deepcopy(model)
        rows(ref, noisy[i:i + 1], noise[i:i + 1], t[i:i + 1]).sum().backward()
        oracle.append({n: p.grad.clone() for n, p in ref.named_parameters()})
    gsm = GradSampleModule(copy.deepcopy(model), batch_first=True, loss_reduction="sum")
    rows(gsm, noisy, noise, t).sum().backward()
    conv_weights, zero, wrong = 0, [], []
    for n, p in gsm._module.named_parameters():
        want = torch.stack([o[n] for o in oracle])
        got = p.grad_sample
        if got is None:
            continue
        if n.endswith("weight") and p.dim() == 4:
            conv_weights += 1
            if got.abs().max() == 0 and want.abs().max() > 0:
                zero.append(n)
        if (got - want).norm() > 1e-6 * want.norm():
            wrong.append(n)
    print(f"Opacus {__import__('opacus').__version__}: {len(wrong)} of {len(names)} parameters have wrong per-sample "
          f"gradients; {len(zero)} of {conv_weights} conv weights got all-zero per-sample gradients:")
    for n in zero:
        print(f"  {n}")
    # dpsynth on the same model: per-sample norms must match the oracle's
    from trainer import DPEngine

    ours = copy.deepcopy(model)
    eng = DPEngine(ours, max_grad_norm=1e9, clipping="flat")  # no clipping: the clipped sum is the plain sum
    with eng.micro_batch(b):
        rows(ours, noisy, noise, t).sum().backward()
    err = max(((p.grad - sum(o[n] for o in oracle)).norm() / sum(o[n] for o in oracle).norm().clamp(min=1e-30)).item()
              for n, p in eng.trainable_parameters.items() if sum(o[n] for o in oracle).norm() > 1e-12)
    print(f"dpsynth engine on the same UNet: largest relative error of the summed gradient vs the oracle {err:.1e} "
          "(per-sample clipping against the oracle: tests/trainer/test_diffusion.py)")


if __name__ == "__main__":
    main()
