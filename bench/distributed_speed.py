"""Data-parallel DP-SGD on CPU: tokens/s of one process vs W gloo ranks on the same logical batch.

    python bench/distributed_speed.py                    # Llama d=256, 4 layers, T=128, V=4096, B=32
    python bench/distributed_speed.py --world 2 --steps 6

Each configuration is a fresh ``torchrun`` launch of this file (``--worker``) with the same model,
data, σ and expected logical batch; the threads per rank are set so every launch uses the same cores
(W = 1 on all of them, W = 2 on half each), plus W = 1 on one thread for the per-core view.  Reported
per launch: the median step time after a warm-up step, global tokens/s over the measured steps (seeded:
every launch trains on the same Poisson batches), the ratio to W = 1, and the
communication share of a step (time in the all-reduces of gradients and loss sums, as rank 0 sees it,
which includes waiting for the slower rank).  Results: ``bench/results/distributed_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "results" / "distributed_cpu.json"


def worker(args) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from trainer import DPTrainer, TrainConfig
    from trainer import distributed as D

    torch.set_num_threads(args.threads)
    dist = D.init_from_env()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=args.vocab, hidden_size=args.d, intermediate_size=args.d * 8 // 3 // 64 * 64,
                      num_hidden_layers=args.layers, num_attention_heads=args.d // 64,
                      num_key_value_heads=args.d // 64, max_position_embeddings=args.seq)
    model = LlamaForCausalLM(cfg)
    g = torch.Generator().manual_seed(1)
    examples = [{"input_ids": torch.randint(0, args.vocab, (args.seq,), generator=g).tolist()} for _ in range(512)]
    config = TrainConfig(noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=args.batch,
                         physical_batch_size=8, steps=args.steps + 1, learning_rate=1e-4, progress=False,
                         replica_check_every=0, seed=0, insecure_seed=True)  # the same batches in every launch
    trainer = DPTrainer(model, examples, config)
    comm = [0.0]
    for name in ("all_reduce_sum", "sum_scalars"):
        original = getattr(D.Distribution, name)

        def timed(self, *a, _original=original, **k):
            start = time.perf_counter()
            try:
                return _original(self, *a, **k)
            finally:
                comm[0] += time.perf_counter() - start

        setattr(D.Distribution, name, timed)
    step, rows = trainer._train_step, []

    def timed_step():
        comm[0] = 0.0
        start = time.perf_counter()
        loss, tokens = step()
        rows.append({"seconds": time.perf_counter() - start, "comm": comm[0], "tokens": tokens})
        return loss, tokens

    trainer._train_step = timed_step
    trainer.train()
    if dist.is_main:
        measured = rows[1:]  # the first step warms up
        seconds = sum(r["seconds"] for r in measured)
        Path(args.result).write_text(json.dumps({
            "world": dist.world_size, "threads_per_rank": args.threads,
            "median_step_s": statistics.median(r["seconds"] for r in measured),
            "tokens_per_s": sum(r["tokens"] for r in measured) / seconds, "comm_share": statistics.median(r["comm"] / r["seconds"] for r in measured),
            "steps": [round(r["seconds"], 3) for r in measured]}))


def launch(args, world: int, threads: int) -> dict:
    result = ROOT / "bench" / "work" / f"distributed_w{world}_t{threads}.json"
    result.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world}", __file__,
           "--worker"]
    settings = {**{k: getattr(args, k) for k in ("d", "layers", "seq", "vocab", "batch", "steps")},
                "threads": threads, "result": str(result)}  # in the environment: torchrun would parse --d=...
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads),
                                         "DPSYNTH_BENCH_SETTINGS": json.dumps(settings)})
    return json.loads(result.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=32, help="expected logical batch (units)")
    ap.add_argument("--steps", type=int, default=5, help="measured steps (after one warm-up step)")
    args = ap.parse_args()
    if args.worker:
        vars(args).update(json.loads(os.environ["DPSYNTH_BENCH_SETTINGS"]))
        return worker(args)
    cores = os.cpu_count() or 1
    runs = [launch(args, 1, 1), launch(args, 1, cores), launch(args, args.world, max(1, cores // args.world))]
    base = runs[1]["tokens_per_s"]
    for r in runs:
        r["ratio_to_one_process"] = r["tokens_per_s"] / base
        print(f"W={r['world']} x {r['threads_per_rank']} thread(s): {r['tokens_per_s']:.0f} tok/s "
              f"({r['ratio_to_one_process']:.2f}x), step {r['median_step_s']:.2f} s, communication "
              f"{r['comm_share']:.0%}")
    OUT.write_text(json.dumps({"command": " ".join(["python", "bench/distributed_speed.py", *sys.argv[1:]]),
                               "model": {k: getattr(args, k) for k in ("d", "layers", "seq", "vocab", "batch")},
                               "cores": cores, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
