"""`dpsynth demo`: a short DP training run on the bundled Water sample, printing ε spent.

Until the record generator lands (issue 3) the demo pretrains a small byte-level
Llama from scratch with DP-SGD on the bundled reviews, serialised one JSON
object per record, and saves the checkpoint with its privacy ledger.
"""

from __future__ import annotations

import json
import shutil
import time
from importlib.resources import files
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="DP-train a small model on the bundled data and report ε spent")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default: runs/demo)")
    p.add_argument("--epsilon", type=float, default=8.0, help="target ε (default: 8)")
    p.add_argument("--steps", type=int, default=40, help="DP-SGD steps (default: 40)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")


def run(args) -> int:
    import pandas as pd
    import torch
    from transformers import LlamaForCausalLM

    from trainer import ConfigError, DPTrainer, TrainConfig

    from ..byte_tokenizer import ByteTokenizer
    from ..models import tiny_llama_config

    if args.out.exists():
        if not args.overwrite:
            raise ConfigError(f"output folder {args.out} exists; pass --overwrite to replace it")
        shutil.rmtree(args.out)
    data_path = files("synth") / "data" / "water_demo.csv"
    frame = pd.read_csv(str(data_path))
    tok = ByteTokenizer()
    examples = [{"input_ids": tok.encode(json.dumps(r, ensure_ascii=False))[:256]} for r in frame.to_dict("records")]
    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_llama_config(tok.vocab_size, hidden=128, layers=2, max_len=256))
    config = TrainConfig(
        target_epsilon=args.epsilon, expected_batch_size=64, physical_batch_size=16, steps=args.steps,
        learning_rate=2e-3, max_grad_norm=1.0, checkpoint_every=10,
    )
    print(f"DP training a {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M-parameter byte-level Llama "
          f"on {len(examples)} bundled Water records ({data_path.name}), target ε={args.epsilon}")
    t0 = time.perf_counter()
    trainer = DPTrainer(model, examples, config, pad_token_id=tok.pad_token_id, output_dir=args.out)
    result = trainer.train()
    trainer.close()
    model.save_pretrained(args.out / "model")
    trainer.ledger.save(args.out / "privacy_ledger.json")
    print(f"\ndone in {time.perf_counter() - t0:.0f} s: {result.steps} steps, loss "
          f"{result.losses[0]:.3f} -> {result.losses[-1]:.3f}")
    print(f"ε spent = {result.epsilon:.3f} at δ = {trainer.delta:.2e} (accountant: {config.accountant}, "
          f"σ = {trainer.noise_multiplier:.3f}, q = {trainer.sampler.sample_rate:.3f}, C = {config.max_grad_norm}, "
          f"clipping = {config.clipping})")
    print(f"model and privacy ledger: {args.out}/")
    return 0
