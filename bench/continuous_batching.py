"""Continuous batching vs one batch per prompt, side by side in one run (SmolLM2-135M-Instruct, offline).

``--n`` label-conditioned documents over ``--groups`` label pairs (each pair its own prompt, as the
text road writes it): (1) the old way, ``sample_texts`` once per prompt (a batch of n / groups rows
each); (2) ``sample_from_prompts``, one continuous batch of ``--batch`` rows across every prompt.
Free text at temperature 1 with the same seed; both report seconds, documents and tokens per second.

    .venv/bin/python bench/continuous_batching.py --n 200 --groups 50 --batch 16
    .venv/bin/python bench/continuous_batching.py --admission 200   # filling a batch of 200 rows: one join vs row by row
    .venv/bin/python bench/continuous_batching.py --trim --n 240     # dropping all-padding cache positions vs not

``--admission B`` times only the filling of an empty batch with B rows over the same few prompts
(their prefill cached, as the label-conditioned and extraction runs have it): the rows joined into
the batch's KV cache one at a time (each join copies the whole cache) against in one concatenation.
``--trim`` runs the continuous batch twice, interleaved, with and without dropping the cache positions
that are padding in every running row (session 19), and reports seconds and the longest cache.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from synth.lm.continuous import sample_from_prompts
    from synth.lm.decoding import sample_texts
    from synth.lm.models import load_smollm2, load_smollm2_tokenizer

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--groups", type=int, default=50)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--json", default="bench/results/continuous_batching_cpu.json")
    ap.add_argument("--admission", type=int, default=0, metavar="B", help="time filling a batch of B rows and stop")
    ap.add_argument("--trim", action="store_true", help="time the cache trimming (on vs off) and stop")
    args = ap.parse_args()
    torch.manual_seed(0)
    model, tok = load_smollm2().eval(), load_smollm2_tokenizer()
    if args.admission:
        return admission(model, tok, args.admission)
    stars, topics = ["1", "2", "3", "4", "5"], ["food", "service", "price", "place", "staff", "drinks", "music",
                                                 "parking", "wifi", "noise"]
    pairs = [(s, t) for s in stars for t in topics][: args.groups]

    def prompt(pair):
        text = f"Write a short review.\nstars: {pair[0]}\ntopic: {pair[1]}"
        return tok.apply_chat_template([{"role": "user", "content": text}], tokenize=True, add_generation_prompt=True,
                                       return_dict=False)

    prompts = [prompt(pairs[i % len(pairs)]) for i in range(args.n)]
    if args.trim:
        return trim(model, tok, prompts, args)
    results = {}
    t = time.perf_counter()
    tokens = 0
    for g, pair in enumerate(pairs):
        count = sum(1 for i in range(args.n) if i % len(pairs) == g)
        _, stats = sample_texts(model, tok, None, prompt(pair), count, batch_size=args.batch,
                                max_record_tokens=args.max_new_tokens - 1, seed=g, progress=False,
                                keep_unfinished=True)
        tokens += stats.tokens
    seconds = time.perf_counter() - t
    results["one batch per prompt"] = {"seconds": round(seconds, 1), "docs_per_s": round(args.n / seconds, 2),
                                       "tokens_per_s": round(tokens / seconds, 1), "batches": len(pairs)}
    t = time.perf_counter()
    _, stats = sample_from_prompts(model, tok, prompts, batch_size=args.batch, max_record_tokens=args.max_new_tokens - 1,
                                   seed=0, progress=False, keep_unfinished=True)
    seconds = time.perf_counter() - t
    results["continuous batching"] = {"seconds": round(seconds, 1), "docs_per_s": round(args.n / seconds, 2),
                                      "tokens_per_s": round(stats.tokens / seconds, 1)}
    a, b = results["one batch per prompt"], results["continuous batching"]
    results["speed-up (docs/s)"] = round(b["docs_per_s"] / a["docs_per_s"], 2)
    results["speed-up (tokens/s)"] = round(b["tokens_per_s"] / a["tokens_per_s"], 2)
    print(json.dumps(results, indent=1))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))


def trim(model, tok, prompts, args, rounds: int = 2) -> None:
    """The continuous batch with and without dropping all-padding cache positions, interleaved."""
    from synth.lm import continuous

    longest = {"length": 0}
    step, drop = continuous._Batch.step, continuous._Batch._drop_unused_positions

    def spy(self, model, tokens):
        longest["length"] = max(longest["length"], self.mask.shape[1])
        return step(self, model, tokens)

    continuous._Batch.step = spy
    times, lengths = {"trimmed": [], "untrimmed": []}, {}
    try:
        for _ in range(rounds):
            for way in times:
                continuous._Batch._drop_unused_positions = drop if way == "trimmed" else (lambda self: None)
                longest["length"] = 0
                t = time.perf_counter()
                continuous.sample_from_prompts(model, tok, prompts, batch_size=args.batch,
                                               max_record_tokens=args.max_new_tokens - 1, seed=0, progress=False,
                                               keep_unfinished=True)
                times[way].append(time.perf_counter() - t)
                lengths[way] = longest["length"]
    finally:
        continuous._Batch.step, continuous._Batch._drop_unused_positions = step, drop
    best = {way: round(min(ts), 1) for way, ts in times.items()}
    print(json.dumps({"documents": len(prompts), "batch": args.batch, f"seconds (best of {rounds})": best,
                      "longest cache": lengths, "speed-up": round(best["untrimmed"] / best["trimmed"], 2)}, indent=1))


@torch.no_grad()
def admission(model, tok, rows: int, rounds: int = 3) -> None:
    """Fill an empty batch with ``rows`` rows over 3 prompts: one row per join vs one join of all,
    interleaved ``rounds`` times after a warm-up fill that caches the prefills."""
    from synth.lm.continuous import _Batch

    texts = [f"Write a patient's review of a drug.\nrating: {r}" for r in ("positive", "neutral", "negative")]
    prompts = [torch.tensor(tok.apply_chat_template([{"role": "user", "content": t}], tokenize=True,
                                                    add_generation_prompt=True, return_dict=False)) for t in texts]
    joining = [(i, prompts[i % 3]) for i in range(rows)]
    batch = _Batch(frozenset(tuple(p.tolist()) for p in prompts))
    batch.admit(model, joining[:3])  # prefills computed and cached: both ways below copy them
    times = {"row by row": [], "one join": []}
    for _ in range(rounds):
        for way in times:
            batch.keep([])
            t = time.perf_counter()
            if way == "row by row":
                for row in joining:
                    batch.admit(model, [row])
            else:
                batch.admit(model, joining)
            times[way].append(time.perf_counter() - t)
    best = {way: round(min(ts), 3) for way, ts in times.items()}
    print(json.dumps({"rows": rows, "prompt_tokens": [len(p) for p in prompts], "seconds (best of "
                      f"{rounds})": best, "speed-up": round(best["row by row"] / best["one join"], 2)}, indent=1))


if __name__ == "__main__":
    main()
