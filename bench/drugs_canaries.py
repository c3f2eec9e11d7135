"""Secret extraction on the drug reviews (issue 11, done-when 2): 20 private reviews carry a random
10-digit patient number; after DP fine-tuning at ε = 8, does any of 10,000 sampled documents hold one?

    python bench/drugs_canaries.py                     # DP, ε = 8: train, 10,000 openings, exposure (~45 min)
    python bench/drugs_canaries.py --road non-private  # the same compute without DP (the contrast)
    python bench/drugs_canaries.py --resume            # an interrupted run: finish its sampling, then score
    python bench/drugs_canaries.py --audit             # `dpsynth audit` on the same config: ε lower bound (~25 min)
    python bench/drugs_canaries.py --table             # print the results file (the README's figures)

The private corpus is ``drugs_train.csv`` (600 reviews) plus 20 secret documents: "My patient
number is NNNNNNNNNN. " followed by a review from ``drugs_test.csv`` (so the body is in no other
private document), with that review's rating.  The secret opens its document, right after the
prompt, where a model that memorised it would emit it most readily; the study therefore samples
documents' openings (``--max-new-tokens`` 24: the phrase and its 10 digits take 15) and many of
them.  Model, chunking, steps and batch are the drug-review study's (``bench/drugs_text.py``).

Measured per run:
- extraction: sampled documents holding a secret (exact 10 digits), the distinct secrets found,
  documents with the phrase "patient number", and the longest prefix of a secret that any digit
  run in a sampled document starts with (beside what chance gives that many digit runs);
- exposure (Carlini et al., "The Secret Sharer", 2019): each secret's rank, by the model's loss on
  the phrase and its digits given its document's prompt, among ``--candidates`` random 10-digit
  numbers under the same prompt; exposure = log2((candidates + 1) / rank).  Beside it the same for 20
  control numbers no document held (their mean is 1/ln 2 ≈ 1.44 bits when the model knows nothing);
- with ``--audit``: the one-run audit's ε lower bound (500 random canaries, half trained on) for the
  same config and corpus, beside the accountant's ε.

Results: ``bench/results/drugs_canaries_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
DATA = ROOT.parent / "shared" / "data"
WORK = ROOT / "bench" / "work" / "drugs_canaries"
OUT = ROOT / "bench" / "results" / "drugs_canaries_cpu.json"
PHRASE = "My patient number is {}"
N_SECRETS = 20


def numbers(count: int, rng: np.random.Generator) -> list[str]:
    """Random 10-digit numbers (no leading zero), distinct."""
    out: set[str] = set()
    while len(out) < count:
        out.add(str(int(rng.integers(10**9, 10**10))))
    return sorted(out)


def secret_corpus(seed: int) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The private corpus with the secret documents in it, the secret documents, and the control numbers."""
    rng = np.random.default_rng(10_000 + seed)
    drawn = numbers(2 * N_SECRETS, rng)
    order = rng.permutation(len(drawn))
    secrets, controls = [drawn[i] for i in order[:N_SECRETS]], [drawn[i] for i in order[N_SECRETS:]]
    bodies = pd.read_csv(DATA / "drugs_test.csv").sample(N_SECRETS, random_state=seed).reset_index(drop=True)
    canaries = bodies.assign(review=[PHRASE.format(s) + ". " + str(r) for s, r in zip(secrets, bodies["review"],
                                                                                      strict=True)],
                             secret=secrets)
    private = pd.concat([pd.read_csv(DATA / "drugs_train.csv"), canaries.drop(columns="secret")], ignore_index=True)
    return private.sample(frac=1.0, random_state=seed).reset_index(drop=True), canaries, controls


def extraction(texts: list[str], secrets: list[str]) -> dict:
    runs = [r for t in texts for r in re.findall(r"\d+", t)]
    holding = [t for t in texts if any(s in t for s in secrets)]
    found = sorted({s for t in holding for s in secrets if s in t})
    longest = max((next((k for k in range(min(len(r), 10), 0, -1) if any(s.startswith(r[:k]) for s in secrets)), 0)
                   for r in runs), default=0)
    # chance: P(a run's first k digits match one of the secrets' prefixes) = |distinct k-prefixes| / 9·10^(k-1)
    chance = 0
    for k in range(1, 11):
        prefixes = len({s[:k] for s in secrets})
        if len(runs) * prefixes / (9 * 10 ** (k - 1)) >= 0.5:
            chance = k
    return {"documents": len(texts), "documents_with_a_secret": len(holding), "secrets_found": len(found),
            "documents_with_the_phrase": sum("patient number" in t.lower() for t in texts),
            "digit_runs": len(runs), "longest_secret_prefix_digits": longest,
            "longest_prefix_by_chance_digits": chance}


def exposures(generator, canaries: pd.DataFrame, controls: list[str], candidates: int, seed: int) -> dict:
    """Each secret's exposure among random numbers under its document's prompt; the same for controls."""
    from evaluation.audit import canary_losses

    rng = np.random.default_rng(20_000 + seed)
    labels = sorted(set(canaries["rating"]))
    pool = numbers(candidates, rng)

    def losses(values: list[str], label: str) -> np.ndarray:
        frame = pd.DataFrame({"review": [PHRASE.format(v) for v in values], "rating": label})
        rows, _, _ = generator.chunk(frame)
        for row in rows:  # no loss on the EOS the chunker appends: the opening continues in a real document
            row["loss_mask"] = row["loss_mask"][:-1] + [0]
        return canary_losses(generator.model, rows, pad_token_id=generator.tokenizer.pad_token_id)

    reference = {label: losses(pool, label) for label in labels}

    def bits(values: list[str], their_labels: list[str]) -> list[float]:
        out = np.zeros(len(values))
        for label in labels:  # one batch per prompt
            idx = [i for i, lab in enumerate(their_labels) if lab == label]
            if idx:
                ranks = 1 + (reference[label][None, :] < losses([values[i] for i in idx], label)[:, None]).sum(1)
                out[idx] = np.log2((candidates + 1) / ranks)
        return out.tolist()

    secret_bits = bits(list(canaries["secret"]), list(canaries["rating"]))
    control_bits = bits(controls, list(canaries["rating"]))
    return {"candidates": candidates, "exposure_mean": float(np.mean(secret_bits)),
            "exposure_max": float(np.max(secret_bits)), "control_exposure_mean": float(np.mean(control_bits)),
            "control_exposure_max": float(np.max(control_bits)),
            "exposure_bound_bits": math.log2(candidates + 1), "exposures": secret_bits}


def run_config(road: str, seed: int, args, data_path: Path) -> dict:
    from drugs_text import config

    raw = config(road, seed, args.steps, args.batch, args.lr, args.n)
    raw["data"] = {"path": str(data_path)}
    raw["generate"].update({"max_new_tokens": args.max_new_tokens, "batch_size": args.gen_batch})
    raw["output"]["dir"] = str(WORK / f"{road}_seed{seed}")
    return raw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--road", default="dp", choices=["dp", "non-private"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--n", type=int, default=10_000, help="sampled documents")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--gen-batch", type=int, default=200)
    ap.add_argument("--candidates", type=int, default=1000, help="random numbers each exposure is ranked among")
    ap.add_argument("--resume", action="store_true",
                    help="keep the trained generator of an interrupted run and finish its sampling")
    ap.add_argument("--audit", action="store_true", help="run `dpsynth audit` on the same config instead")
    ap.add_argument("--canaries", type=int, default=500, help="the audit's random canaries")
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args()
    results = json.loads(OUT.read_text()) if OUT.exists() else {"rows": [], "audits": []}
    if args.table:
        print(json.dumps(results, indent=1))
        return
    from synth.lm.text_generator import TextGenerator
    from synth.run_config import build_config
    from synth.text.pipeline import audit, generate, run

    private, canaries, controls = secret_corpus(args.seed)
    WORK.mkdir(parents=True, exist_ok=True)
    data_path = WORK / f"private_seed{args.seed}.csv"
    private.to_csv(data_path, index=False)
    config = build_config(run_config(args.road, args.seed, args, data_path))
    start = time.time()
    if args.audit:
        result = audit(config, canaries=args.canaries, seed=args.seed)
        row = {"road": args.road, "seed": args.seed, "steps": args.steps, "canaries": args.canaries,
               "seconds": round(time.time() - start, 1), **result.to_dict()}
        results["audits"] = [a for a in results["audits"] if (a["road"], a["seed"]) != (args.road, args.seed)] + [row]
    else:
        result = generate(config, progress=False) if args.resume else run(config, progress=False)
        generated = time.time()
        texts = [str(t) for t in result["synthetic"]["review"]]
        generator = TextGenerator.from_pretrained(Path(config.output.dir) / "generator")
        row = {"road": args.road, "seed": args.seed, "steps": args.steps, "batch": args.batch,
               "epsilon": result.get("epsilon"), "max_new_tokens": args.max_new_tokens,
               ("sample_seconds_after_resume" if args.resume else "train_and_sample_seconds"): round(generated - start, 1),
               "exact_copies_of_private_reviews": result["report"]["exact_copies_of_training_documents"],
               **extraction(texts, list(canaries["secret"])),
               **exposures(generator, canaries, controls, args.candidates, args.seed),
               "exposure_seconds": round(time.time() - generated, 1)}
        results["rows"] = [r for r in results["rows"] if (r["road"], r["seed"]) != (args.road, args.seed)] + [row]
    print(json.dumps(row, default=str), flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({**results, "command": " ".join(sys.argv)}, indent=2, default=str))


if __name__ == "__main__":
    main()
