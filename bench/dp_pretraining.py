"""DP pretraining from scratch on a corpus (issue 11, item 5): held-out loss against steps and logical
batch at a fixed ε, on this CPU.

    python bench/dp_pretraining.py                      # the study: ε = 8, three batch sizes, one compute
    python bench/dp_pretraining.py --batches 128 --steps 128 --no-baseline   # one more point, added to the file
    python bench/dp_pretraining.py --table              # the docs' table from the results file

A Llama-style model from scratch (``model.scratch_size``, byte-level public tokenizer) on the drug
reviews (``../shared/data/drugs_train.csv``, held out: ``drugs_test.csv``), the text road's chunking:
256-token chunks, the privacy unit the review (document), at most 2 chunks per sampled review.
Every run sees the same number of sampled reviews in expectation (``--compute``, batch × steps), so a
larger logical batch means fewer steps; σ is calibrated to ε for each.  Linear warm-up (10% of the
steps) and a cosine decay to 0.1 × the rate.  The held-out loss (nats per byte, on the held-out
reviews' chunks, loss-masked tokens only) is measured at eight points of each run.  A non-private run
with the smallest batch is the reference.  Results: ``bench/results/dp_pretraining_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "bench" / "results" / "dp_pretraining_cpu.json"


def heldout_loss(model, rows: list[dict], pad: int, batch: int = 32) -> float:
    """Mean cross-entropy (nats) per loss-masked token of ``rows``: the trainer's own padding and
    per-row loss, weighted back to tokens."""
    import torch

    from trainer.batching import collate, per_row_loss

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(rows), batch):
            mb = collate(rows, [[j] for j in range(i, min(i + batch, len(rows)))], pad_token_id=pad, user_level=False)
            logits = model(input_ids=mb.input_ids, attention_mask=mb.attention_mask).logits
            scored = mb.loss_mask[:, 1:].sum(1)
            total += float((per_row_loss(logits, mb.input_ids, mb.loss_mask) * scored).sum())
            count += int(scored.sum())
    model.train()
    return total / count


def run_one(batch: int, steps: int, *, epsilon: float | None, size: str, lr: float, seed: int,
            private: pd.DataFrame, heldout: pd.DataFrame) -> dict:
    import torch

    from synth.lm import ModelChoice
    from synth.lm.text_generator import TextGenerator
    from synth.lm.text_spec import TextSpec
    from trainer import DPTrainer, TrainConfig

    torch.manual_seed(seed)  # the from-scratch initialisation
    spec = TextSpec(text="review", chunk_tokens=256, overlap_tokens=32, max_chunks_per_unit=2)
    gen = TextGenerator(spec, ModelChoice(model="scratch", scratch_size=size))
    rows, units, report = gen.chunk(private)
    eval_rows, _, _ = gen.chunk(heldout)
    privacy = {"target_epsilon": epsilon} if epsilon is not None else {"non_private": True}
    config = TrainConfig(**privacy, expected_batch_size=batch, physical_batch_size=32, steps=steps,
                         learning_rate=lr, warmup_steps=max(1, steps // 10), lr_schedule="cosine", min_lr_ratio=0.1,
                         privacy_unit="document", max_examples_per_user=spec.max_chunks_per_unit,
                         seed=seed, insecure_seed=True, progress=False, accountant="prv")
    trainer = DPTrainer(gen.model, rows, config, units=units, pad_token_id=gen.tokenizer.pad_token_id)
    pad = gen.tokenizer.pad_token_id
    points = sorted({max(1, round(steps * f / 8)) for f in range(1, 9)})
    curve, start, done = [{"step": 0, "heldout_loss": heldout_loss(gen.model, eval_rows, pad)}], time.time(), 0
    try:
        for point in points:
            result = trainer.train(max_steps=point - done)
            done = point
            curve.append({"step": point, "heldout_loss": heldout_loss(gen.model, eval_rows, pad),
                          "train_loss": result.losses[-1] if result.losses else None})
    finally:
        trainer.close()
    return {"batch": batch, "steps": steps, "epsilon": epsilon, "spent_epsilon": trainer.ledger.epsilon() if epsilon else None,
            "noise_multiplier": trainer.noise_multiplier, "sample_rate": batch / report.units,
            "noise_per_unit": trainer.noise_multiplier / batch if epsilon else 0.0,
            "size": size, "learning_rate": lr, "seed": seed, "units": report.units, "chunks": report.chunks,
            "heldout_chunks": len(eval_rows), "seconds": round(time.time() - start, 1), "curve": curve,
            "final_heldout_loss": curve[-1]["heldout_loss"]}


def _run_key(row: dict) -> tuple:
    """One run of the study: a new run with the same key replaces the stored one."""
    return row["batch"], row["steps"], row["epsilon"], row["size"], row["seed"]


def markdown(rows: list[dict]) -> str:
    lines = ["| ε | logical batch (reviews) | steps | σ | σ / batch | held-out loss at 1/4 · 1/2 · end of the steps "
             "(nats / byte) | seconds |", "|---:|---:|---:|---:|---:|---|---:|"]
    for r in sorted(rows, key=lambda r: (r["epsilon"] is None, -(r["epsilon"] or 0), r["batch"], r["steps"])):
        c = {p["step"]: p["heldout_loss"] for p in r["curve"]}
        picks = [c[min(c, key=lambda s, f=f: abs(s - r["steps"] * f))] for f in (0.25, 0.5, 1.0)]
        eps = "∞ (non-private)" if r["epsilon"] is None else f"{r['epsilon']:g}"
        sigma = "0" if r["epsilon"] is None else f"{r['noise_multiplier']:.2f}"
        ratio = "0" if r["epsilon"] is None else f"{r['noise_per_unit']:.4f}"
        lines.append(f"| {eps} | {r['batch']} | {r['steps']} | {sigma} | {ratio} | "
                     f"{' · '.join(f'{x:.3f}' for x in picks)} | {r['seconds']:.0f} |")
    start = rows[0]["curve"][0]["heldout_loss"]
    lines.append(f"\nHeld-out loss of the untrained model: {start:.3f} nats per byte (ln 259 = 5.557 for a uniform guess).")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epsilon", type=float, default=8.0)
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 128, 512])
    ap.add_argument("--compute", type=int, default=4096, help="batch × steps, the same for every run")
    ap.add_argument("--steps", type=int, default=None, help="a fixed number of steps instead (batch × steps varies)")
    ap.add_argument("--size", default="tiny", help="model.scratch_size: tiny (64 wide, 2 layers) or small")
    ap.add_argument("--learning-rate", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-baseline", action="store_true", help="skip the non-private reference run")
    ap.add_argument("--heldout-docs", type=int, default=100, help="held-out reviews scored")
    ap.add_argument("--table", action="store_true", help="print the docs' table from the results file and stop")
    args = ap.parse_args()
    if args.table:
        print(markdown(json.loads(OUT.read_text())["rows"]))
        return
    private = pd.read_csv(DATA / "drugs_train.csv")
    heldout = pd.read_csv(DATA / "drugs_test.csv").head(args.heldout_docs)

    def steps_for(batch: int) -> int:
        return args.steps if args.steps is not None else args.compute // batch

    plan = [(b, steps_for(b), args.epsilon) for b in args.batches]
    if not args.no_baseline:
        plan.append((min(args.batches), steps_for(min(args.batches)), None))
    rows = json.loads(OUT.read_text())["rows"] if OUT.exists() else []  # runs of other grids are kept
    for batch, steps, eps in plan:
        row = run_one(batch, steps, epsilon=eps, size=args.size, lr=args.learning_rate, seed=args.seed,
                      private=private, heldout=heldout)
        print(json.dumps({k: v for k, v in row.items() if k != "curve"}), flush=True)
        rows = [r for r in rows if _run_key(r) != _run_key(row)] + [row]
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=2))
    print(markdown(rows))


if __name__ == "__main__":
    main()
