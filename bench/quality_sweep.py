"""Which DP fine-tuning settings give the best generator for the compute the demo can afford?

Each configuration DP-trains a fresh LoRA on SmolLM2-135M-Instruct (offline) on the
demo's 300 Water rows at the given ε, then scores the per-token negative
log-likelihood of 60 held-out Water rows (rows of ../shared/data/water_dev.csv that are
not in the demo set) under the same prompt.  Lower held-out NLL = the generator puts
more probability on real-looking records.  Per-step training losses (the noisy DP
batch means) are kept for the loss-curve plot.

    .venv/bin/python bench/quality_sweep.py                       # every configuration
    .venv/bin/python bench/quality_sweep.py --only zero-shot demo # some of them
    .venv/bin/python bench/quality_sweep.py --plot-only           # redraw the figure

Results: bench/results/quality_sweep.json (one entry per configuration, merged with
earlier runs), figure: docs/quality_sweep.png.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "quality_sweep.json"
FIGURE = ROOT / "docs" / "quality_sweep.png"

# name: (expected_batch_size, steps, learning_rate, target ε or None for σ = 0, lora_rank)
CONFIGS = {
    "zero-shot": None,
    "old demo (B24 T8 lr3e-3)": (24, 8, 3e-3, 8.0, 8),
    "B24 T8 lr1e-2": (24, 8, 1e-2, 8.0, 8),
    "B24 T8 lr3e-2": (24, 8, 3e-2, 8.0, 8),
    "B48 T8 lr1e-2": (48, 8, 1e-2, 8.0, 8),
    "B24 T16 lr1e-2": (24, 16, 1e-2, 8.0, 8),
    "B16 T16 lr1e-2": (16, 16, 1e-2, 8.0, 8),
    "B24 T12 lr1e-2 (new demo)": (24, 12, 1e-2, 8.0, 8),
    "non-private B24 T8 lr3e-3": (24, 8, 3e-3, None, 8),
}


def heldout_nll(generator, frame, batch: int = 6) -> float:
    """Mean NLL per record token (body + EOS; the prompt is not scored) over ``frame``."""
    from trainer.batching import collate

    examples = generator.examples(frame)
    model = generator.model
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), batch):
            units = [[i] for i in range(start, min(start + batch, len(examples)))]
            mb = collate(examples, units, pad_token_id=generator.tokenizer.pad_token_id, user_level=False)
            logits = model(input_ids=mb.input_ids, attention_mask=mb.attention_mask).logits[:, :-1]
            target, weight = mb.input_ids[:, 1:], mb.loss_mask[:, 1:].float()
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
            total += float((nll * weight).sum())
            count += float(weight.sum())
    model.train()
    return total / count


def data():
    import pandas as pd

    from synth.config_files import read_config
    from synth.loading import load_table, typed_frame
    from synth.run_config import build_config

    raw = read_config(ROOT / "synth" / "data" / "demo.toml")
    raw["data"]["path"] = str(ROOT / "synth" / "data" / "water_demo.csv")
    config = build_config(raw)
    train = typed_frame(load_table(config.data.path), config.spec, source=config.data.path)
    dev = typed_frame(load_table(ROOT.parent / "shared" / "data" / "water_dev.csv"), config.spec, source="water_dev.csv")
    seen = set(train["cleaned_review"].astype(str) + train["title"].astype(str))
    unseen = dev[~(dev["cleaned_review"].astype(str) + dev["title"].astype(str)).isin(seen)]
    heldout = unseen.sample(n=60, random_state=0)
    return config, train, pd.DataFrame(heldout)


def run_one(name: str, setting, config, train, heldout) -> dict:
    from synth.records.generator import RecordGenerator
    from trainer import TrainConfig

    torch.manual_seed(0)
    gen = RecordGenerator(config.spec, config.model)
    entry: dict = {"name": name}
    t0 = time.perf_counter()
    if setting is not None:
        batch, steps, lr, eps, rank = setting
        assert rank == config.model.lora_rank
        privacy = {"target_epsilon": eps} if eps is not None else {"noise_multiplier": 0.0}
        tc = TrainConfig(**privacy, expected_batch_size=batch, physical_batch_size=6, steps=steps,
                         learning_rate=lr, max_grad_norm=1.0, seed=0, progress=False)
        result = gen.fit(train, tc)
        entry.update(batch=batch, steps=steps, lr=lr, target_epsilon=eps, losses=[float(x) for x in result.losses],
                     epsilon=gen.ledger.epsilon(), noise_multiplier=gen.ledger.events[-1].noise_multiplier)
    entry["train_seconds"] = time.perf_counter() - t0
    entry["heldout_nll"] = heldout_nll(gen, heldout)
    print(json.dumps({k: v for k, v in entry.items() if k != "losses"}), flush=True)
    return entry


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, e in results.items():
        if e.get("losses"):
            rows = [e["batch"] * (i + 1) for i in range(len(e["losses"]))]
            ax1.plot(rows, e["losses"], marker="o", ms=3, label=name)
    ax1.set_xlabel("expected rows processed (batch × step)")
    ax1.set_ylabel("training loss (batch mean, nats/token)")
    ax1.set_title("DP training loss, SmolLM2 LoRA on 300 Water rows")
    ax1.legend(fontsize=7)
    names = list(results)
    ax2.barh(names, [results[n]["heldout_nll"] for n in names])
    ax2.set_xlabel("held-out NLL (nats/token, 60 unseen rows; lower is better)")
    ax2.invert_yaxis()
    fig.tight_layout()
    FIGURE.parent.mkdir(exist_ok=True)
    fig.savefig(FIGURE, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help="run only these configurations (prefix match)")
    ap.add_argument("--plot-only", action="store_true")
    args = ap.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if not args.plot_only:
        config, train, heldout = data()
        torch.set_num_threads(max(1, torch.get_num_threads()))
        for name, setting in CONFIGS.items():
            if args.only and not any(name.startswith(p) for p in args.only):
                continue
            results[name] = run_one(name, setting, config, train, heldout)
            RESULTS.write_text(json.dumps(results, indent=1))
    plot(results)
    for name, e in results.items():
        eps = e.get("epsilon")
        print(f"{name:28s} held-out NLL {e['heldout_nll']:.3f}  "
              f"ε {eps if eps is None or not math.isfinite(eps) else round(eps, 2)}  train {e['train_seconds']:.0f} s")


if __name__ == "__main__":
    main()
