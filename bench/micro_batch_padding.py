"""Micro-batches in sample order vs longest unit first (session 23), side by side in one run.

A logical batch's units are cut into micro-batches of ``physical_batch_size`` rows, each padded to its
longest row.  Counted: the tokens the forwards run (padding included) over ``--batches`` Poisson
batches of the two studies' training rows, with the units in sample order and longest first (what the
trainer does now); Water also without the spec's description in the prompt
(``bench/water_evolve.py --no-description``).  ``--time-steps K`` also DP-trains the drug-review study's model K steps each way
from the same seed (the same Poisson batches) and reports seconds per step; run it alone.

    .venv/bin/python bench/micro_batch_padding.py                 # token counts (about a minute)
    .venv/bin/python bench/micro_batch_padding.py --time-steps 4  # and a timed A/B (about 8 minutes)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
DATA = ROOT.parent / "shared" / "data"


def drug_rows():
    """The drug-review study's training chunks and their units (bench/drugs_text.py's config)."""
    from drugs_text import config

    from synth.lm.text_generator import TextGenerator
    from synth.run_config import build_config

    cfg = build_config(config("dp", 0, 36, 32, 1e-2, 600))
    gen = TextGenerator(cfg.text, cfg.model)
    rows, units, _ = gen.chunk(pd.read_csv(DATA / "drugs_train.csv"))
    return cfg, gen, rows, units


def water_rows(no_description: bool = False):
    """The Water study's training rows, one unit each (bench/water_evolve.py's config)."""
    from water_evolve import config

    from synth.loading import typed_frame
    from synth.records.generator import RecordGenerator
    from synth.run_config import build_config
    from synth.validation import check_domain

    cfg = build_config(config("fine-tune", 500, 1, 0, no_description=no_description))
    frame = pd.read_csv(DATA / "water_dev.csv").iloc[:1500]
    frame, _ = check_domain(typed_frame(frame, cfg.spec, source="water_dev.csv"), cfg.spec, policy="clip",
                            estimated=set(), source="water_dev.csv")
    rows = RecordGenerator(cfg.spec, cfg.model).examples(frame)
    return cfg, rows, list(range(len(rows)))


def tokens_run(rows, units, expected_batch: int, per_micro: int, batches: int, seed: int = 0) -> dict:
    from trainer.sampling import micro_batches

    cost = [len(r["input_ids"]) for r in rows]
    by_unit = defaultdict(list)
    for i, u in enumerate(units):
        by_unit[u].append(i)
    grouped = list(by_unit.values())
    rng = np.random.default_rng(seed)
    totals = {"real": 0, "sample_order": 0, "longest_first": 0}
    for _ in range(batches):
        batch = [grouped[i] for i in np.flatnonzero(rng.random(len(grouped)) < expected_batch / len(grouped))]
        totals["real"] += sum(cost[r] for u in batch for r in u)
        for key, mbs in (("sample_order", micro_batches(batch, per_micro)),
                         ("longest_first", micro_batches(batch, per_micro, cost))):
            totals[key] += sum(max(cost[r] for u in mb for r in u) * sum(map(len, mb)) for mb in mbs)
    return {**totals, "longest_first_over_sample_order": totals["longest_first"] / totals["sample_order"]}


def timed_steps(steps: int) -> dict:
    """Seconds per DP step of the drug-review study, sample order vs longest first, same batches."""
    import dataclasses

    import trainer.loop as loop
    from trainer import train_model
    from trainer.sampling import micro_batches

    out = {}
    for key, batcher in (("sample_order", lambda b, m, cost=None: micro_batches(b, m)),
                         ("longest_first", micro_batches)):
        cfg, gen, rows, units = drug_rows()
        train = dataclasses.replace(cfg.train, steps=steps, progress=False, privacy_unit="document",
                                    max_examples_per_user=gen.spec.max_chunks_per_unit, target_epsilon=None,
                                    noise_multiplier=1.0, delta=1e-5)
        loop.micro_batches = batcher
        try:
            t0 = time.perf_counter()
            train_model(gen.model, rows, train, units=units, pad_token_id=gen.tokenizer.pad_token_id)
            out[key] = (time.perf_counter() - t0) / steps
        finally:
            loop.micro_batches = micro_batches
    out["longest_first_over_sample_order"] = out["longest_first"] / out["sample_order"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--time-steps", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "micro_batch_padding_cpu.json")
    args = ap.parse_args()
    cfg, _, rows, units = drug_rows()
    report = {"drug_reviews": tokens_run(rows, units, cfg.train.expected_batch_size, cfg.train.physical_batch_size,
                                         args.batches)}
    wcfg, wrows, wunits = water_rows()
    for batch in (24, 64):
        report[f"water_batch{batch}"] = tokens_run(wrows, wunits, batch, wcfg.train.physical_batch_size, args.batches)
    wcfg, wrows, wunits = water_rows(no_description=True)  # bench/water_evolve.py --no-description
    report["water_batch64_no_description"] = tokens_run(wrows, wunits, 64, wcfg.train.physical_batch_size,
                                                        args.batches)
    if args.time_steps:
        report["drug_reviews_seconds_per_step"] = timed_steps(args.time_steps)
    print(json.dumps(report, indent=2))
    args.out.write_text(json.dumps({"command": " ".join(sys.argv), **report}, indent=2) + "\n")


if __name__ == "__main__":
    main()
