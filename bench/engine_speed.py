"""Speed and memory of DP training: non-private vs dpsynth's engine vs Opacus, in one run.

Each mode runs in its own fresh process on the same model, data and batch (the
median step time is reported, robust to interference on a shared machine), so
peak memory is measured cleanly; the parent prints one table with ratios to
non-private training.

    python bench/engine_speed.py                       # Llama-style d=512, 6 layers, T=256, V=8192, B=8
    python bench/engine_speed.py --model smollm2-lora  # DP LoRA on SmolLM2-135M-Instruct (offline GGUF)
    python bench/engine_speed.py --model unet --batch 16 --modes nonprivate,per_layer,flat,opacus_hooks
                                                       # diffusers UNet2DModel (32, 64, 64), 32 px, attention
    python bench/engine_speed.py --model unet-cond --batch 64 --modes nonprivate,per_layer,flat
                                                       # the image road's caption-conditional UNet ("tiny"
                                                       # preset, cross-attention on 16 x 384 caption states)
    python bench/engine_speed.py --model smollm2-lora --seq 160 --batch 6 \
        --modes nonprivate,per_layer,nonprivate_bf16,per_layer_bf16 --frozen-bf16 --rounds 2

A mode ending in ``_bf16`` runs its forward under bf16 autocast (``train.dtype = "bf16"``; the
trainable parameters stay fp32); ``--frozen-bf16`` also stores the frozen parameters (LoRA's base
model) in bf16 in those modes, so autocast does not cast them again at every forward.

Memory on CPU is the process's peak RSS minus its RSS just before the first
training step (model and inputs already built): the working memory of training
(activations, gradients, optimizer state, per-sample buffers).  On CUDA it is
torch.cuda.max_memory_allocated over the same span.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODES = ["nonprivate", "per_layer", "flat", "opacus_hooks", "opacus_ghost"]
CAPTION_TOKENS, CAPTION_DIM = 16, 384


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def build_model(args):
    torch.manual_seed(0)
    if args.model == "unet":
        from diffusers import UNet2DModel

        model = UNet2DModel(sample_size=args.image, in_channels=3, out_channels=3, block_out_channels=(32, 64, 64),
                            layers_per_block=1, norm_num_groups=8, attention_head_dim=8,
                            down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
                            up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"))
        return model, None
    if args.model == "unet-cond":
        from diffusers import UNet2DConditionModel

        from synth.diffusion.generator import _conditional_preset

        model = UNet2DConditionModel(sample_size=args.image, in_channels=3, out_channels=3, attention_head_dim=8,
                                     cross_attention_dim=CAPTION_DIM, **_conditional_preset("tiny"))
        return model, None
    if args.model == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        cfg = LlamaConfig(
            vocab_size=args.vocab, hidden_size=args.d, intermediate_size=int(args.d * 8 / 3) // 64 * 64,
            num_hidden_layers=args.layers, num_attention_heads=args.d // 64, num_key_value_heads=args.d // 64,
            max_position_embeddings=args.seq, tie_word_embeddings=False,
        )
        return LlamaForCausalLM(cfg), args.vocab
    from peft import LoraConfig, get_peft_model

    from synth.lm.models import load_smollm2

    model = load_smollm2()
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=targets))
    return model, model.config.vocab_size


def per_row(logits, ids):
    v = logits.shape[-1]
    nll = F.cross_entropy(logits[:, :-1].reshape(-1, v).float(), ids[:, 1:].reshape(-1), reduction="none")
    return nll.view(ids.shape[0], -1).mean(1)


def rows_loss(model, batch, args):
    """Per-row loss: next-token NLL for LMs, ε-prediction MSE for the UNet."""
    if args.model == "unet":
        noisy, t, noise = batch
        return F.mse_loss(model(noisy, t).sample, noise, reduction="none").flatten(1).mean(1)
    if args.model == "unet-cond":
        noisy, t, noise, states, mask = batch
        out = model(noisy, t, encoder_hidden_states=states, encoder_attention_mask=mask).sample
        return F.mse_loss(out, noise, reduction="none").flatten(1).mean(1)
    return per_row(model(input_ids=batch).logits, batch)


def make_batches(args, vocab, dev, n):
    gen = torch.Generator().manual_seed(1)
    if args.model in ("unet", "unet-cond"):
        shape = (args.batch, 3, args.image, args.image)
        batches = [(torch.randn(shape, generator=gen).to(dev), torch.randint(0, 1000, (args.batch,), generator=gen).to(dev),
                    torch.randn(shape, generator=gen).to(dev)) for _ in range(n)]
        if args.model == "unet-cond":  # frozen caption states (MiniLM's 384-d tokens), some captions padded
            lengths = torch.randint(4, CAPTION_TOKENS + 1, (n, args.batch), generator=gen)
            batches = [(*b, torch.randn(args.batch, CAPTION_TOKENS, CAPTION_DIM, generator=gen).to(dev),
                        (torch.arange(CAPTION_TOKENS)[None] < lengths[i][:, None]).to(dev))
                       for i, b in enumerate(batches)]
        return batches
    return [torch.randint(0, vocab, (args.batch, args.seq), generator=gen).to(dev) for _ in range(n)]


def make_step(mode, model, args, vocab):
    mode = mode.removesuffix("_bf16")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    if mode == "nonprivate":

        def step(ids):
            rows_loss(model, ids, args).mean().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step
    if mode in ("per_layer", "flat"):
        from trainer import DPEngine, privatize_gradients
        from trainer.noise import make_generators

        eng = DPEngine(model, max_grad_norm=1.0, clipping=mode, norm_method=args.norm_method)
        gen = make_generators(0, ids_device(args))
        trainable = list(eng.trainable_parameters.values())

        def step(ids):
            with eng.micro_batch(args.batch):
                rows_loss(model, ids, args).sum().backward()
            privatize_gradients(trainable, noise_multiplier=1.0, max_grad_norm=1.0,
                                expected_batch_size=args.batch, generator=gen)
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step
    if mode == "opacus_hooks":
        from opacus import GradSampleModule
        from opacus.optimizers import DPOptimizer

        gsm = GradSampleModule(model, batch_first=True, loss_reduction="sum")
        dpo = DPOptimizer(opt, noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=args.batch,
                          loss_reduction="sum")

        def step(ids):
            rows_loss(gsm, ids, args).sum().backward()
            dpo.step()
            dpo.zero_grad(set_to_none=True)

        return step
    if mode == "opacus_ghost":
        from opacus.grad_sample import GradSampleModuleFastGradientClipping
        from opacus.optimizers import DPOptimizerFastGradientClipping
        from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping

        gsm = GradSampleModuleFastGradientClipping(model, batch_first=True, loss_reduction="mean",
                                                   max_grad_norm=1.0, use_ghost_clipping=True)
        dpo = DPOptimizerFastGradientClipping(opt, noise_multiplier=1.0, max_grad_norm=1.0,
                                              expected_batch_size=args.batch, loss_reduction="mean")
        crit = DPLossFastGradientClipping(gsm, dpo, torch.nn.CrossEntropyLoss(reduction="mean"), loss_reduction="mean")

        def step(ids):
            logits = gsm(input_ids=ids).logits[:, :-1]
            loss = crit(logits.reshape(-1, vocab).float(), ids[:, 1:].reshape(-1), shape=logits.shape)
            loss.backward()
            dpo.step()
            dpo.zero_grad(set_to_none=True)

        return step
    raise ValueError(mode)


def ids_device(args):
    return "cuda" if args.device == "cuda" else "cpu"


def prepare_for_training(model, kind: str, dev: str, *, bf16: bool, frozen_bf16: bool) -> None:
    """No KV cache for the LoRA LM; with ``bf16``, autocast around the forward only, as the trainer does
    (backward outside it), and with ``frozen_bf16`` the frozen parameters stored in bf16 too."""
    if kind == "smollm2-lora":
        model.config.use_cache = False
    if bf16 and frozen_bf16:
        for p in model.parameters():
            if not p.requires_grad:
                p.data = p.data.to(torch.bfloat16)
    if bf16:
        forward = model.forward

        def autocast_forward(*a, **k):
            with torch.autocast(dev, dtype=torch.bfloat16):
                return forward(*a, **k)

        model.forward = autocast_forward


def child(args) -> dict:
    torch.set_num_threads(args.threads or torch.get_num_threads())
    model, vocab = build_model(args)
    dev = ids_device(args)
    model.to(dev).train()
    prepare_for_training(model, args.model, dev, bf16=args.mode.endswith("_bf16"), frozen_bf16=args.frozen_bf16)
    batches = make_batches(args, vocab, dev, args.warmup + args.steps)
    step = make_step(args.mode, model, args, vocab)
    if dev == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    base_rss = _rss_mib()
    for ids in batches[: args.warmup]:
        step(ids)
    if dev == "cuda":
        torch.cuda.synchronize()
    times = []
    for ids in batches[args.warmup :]:
        t0 = time.perf_counter()
        step(ids)
        if dev == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    dt = sorted(times)[len(times) // 2]  # median step: robust to a noisy neighbour on a shared CPU
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mem = (torch.cuda.max_memory_allocated() - base) / 2**20 if dev == "cuda" else peak_rss - base_rss
    items = args.batch if args.model.startswith("unet") else args.batch * args.seq  # images, or tokens
    return {"mode": args.mode, "sec_per_step": dt, "tokens_per_s": items / dt, "mem_mib": mem,
            "peak_rss_mib": peak_rss}


def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["llama", "smollm2-lora", "unet", "unet-cond"], default="llama")
    ap.add_argument("--image", type=int, default=32, help="image side for --model unet")
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--norm-method", default="auto", choices=["auto", "ghost", "instantiate"])
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--frozen-bf16", action="store_true", help="_bf16 modes: frozen parameters stored in bf16")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run the list of modes this many times, interleaved, and report the median per mode")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--mode", help=argparse.SUPPRESS)  # child process
    args = ap.parse_args(argv)
    if args.mode:
        print("RESULT " + json.dumps(child(args)))
        return
    runs: dict[str, list[dict]] = {}
    child_argv = [a for a in (argv if argv is not None else sys.argv[1:])]
    for _ in range(args.rounds):  # interleaved: slow drift of a shared machine hits every mode alike
        for mode in args.modes.split(","):
            out = subprocess.run([sys.executable, __file__, *child_argv, "--mode", mode], capture_output=True, text=True)
            line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
            if out.returncode or not line:
                print(f"{mode}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
                continue
            runs.setdefault(mode, []).append(json.loads(line[0][7:]))
            print(f"  {mode}: {runs[mode][-1]['tokens_per_s']:.0f} tok/s", file=sys.stderr)
    results = [
        {"mode": m, "tokens_per_s": _median([r["tokens_per_s"] for r in rs]), "mem_mib": _median([r["mem_mib"] for r in rs]),
         "runs": rs}
        for m, rs in runs.items()
    ]
    base = next((r for r in results if r["mode"] == "nonprivate"), None)
    shape = {"llama": f"d={args.d} layers={args.layers} V={args.vocab} T={args.seq} ",
             "smollm2-lora": f"LoRA r=8 on q,k,v,o,gate,up,down T={args.seq} ",
             "unet": f"UNet2DModel (32, 64, 64) {args.image}px ",
             "unet-cond": f"UNet2DConditionModel tiny (16, 32) {args.image}px, {CAPTION_TOKENS} x {CAPTION_DIM} captions "
             }[args.model]
    unit = "img/s" if args.model.startswith("unet") else "tok/s"
    print(f"\nmodel={args.model} {shape}B={args.batch} "
          f"device={args.device} threads={torch.get_num_threads()} steps={args.steps} rounds={args.rounds}")
    print(f"{'mode':<14}{unit:>9}{'x nonpriv':>11}{'mem MiB':>10}{'x nonpriv':>11}")
    for r in results:
        sp = r["tokens_per_s"] / base["tokens_per_s"] if base else float("nan")
        mm = r["mem_mib"] / base["mem_mib"] if base else float("nan")
        print(f"{r['mode']:<14}{r['tokens_per_s']:>9.1f}{sp:>10.2f}x{r['mem_mib']:>10.0f}{mm:>10.2f}x")
    ours = {r["mode"]: r for r in results}
    for a in ("per_layer", "flat"):
        for b in ("opacus_hooks", "opacus_ghost"):
            if a in ours and b in ours:
                print(f"{a} / {b}: {ours[a]['tokens_per_s'] / ours[b]['tokens_per_s']:.2f}x {unit}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=2))


if __name__ == "__main__":
    main()
