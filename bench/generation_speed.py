"""Speed of grammar-constrained generation, side by side in one run (SmolLM2-135M-Instruct, offline).

Three ways to sample ``--n`` records of the demo's Water spec, same model, prompt, batch:

1. dpsynth's decoder (synth/lm/decoding.py): grammar mask at every token, the
   shared prompt run once, finished rows leave the batch;
2. the same decoder with the grammar mask switched off, each row forced to stop after
   exactly as many tokens as its record in (1): the cost of constraining is (1) vs (2);
3. the baseline it replaced: Hugging Face ``generate`` with the same mask as a logits
   processor (finished rows stay in the batch, padding, until the longest is done).

    .venv/bin/python bench/generation_speed.py --n 50 --batch 50 --repeats 3
    .venv/bin/python bench/generation_speed.py --n 300 --batch 100 --repeats 2 --continuous --skip-hf

``--continuous`` adds (4): the continuous batch (synth/lm/continuous.py) given the one prompt ``--n``
times: a finished row's slot takes the next record at once, where (1) runs ``--batch`` rows until
its last row ends, so with ``--n`` above ``--batch`` the tail of each batch runs short.
``--skip-hf`` leaves out (3).  ``--bf16`` adds (5): the decoder (1) on a bf16 copy of the model
(``generate.dtype = "bf16"``, synth/lm/decoding_model.py).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class _LengthOnly:
    """Stands in for GrammarMatchers: no mask; row i emits exactly ``lengths[i]`` tokens, then EOS."""

    def __init__(self, lengths: list[int], eos: int):
        self.lengths, self.eos, self.done = lengths, eos, [0] * len(lengths)

    def mask_(self, logits, rows):
        logits[:, self.eos] = float("-inf")
        for i, r in enumerate(rows):
            if self.done[r] >= self.lengths[r]:
                logits[i] = float("-inf")
                logits[i, self.eos] = 0.0

    def consume(self, row, token):
        self.done[row] += 1

    def accepting(self, row):
        return True


class _HFMask:
    """The replaced baseline: the grammar mask as a transformers LogitsProcessor for ``generate``."""

    def __init__(self, matchers, prompt_len: int, eos: int):
        self.m, self.prompt_len, self.eos = matchers, prompt_len, eos
        self.done = [False] * matchers.n_rows

    def __call__(self, input_ids, scores):
        if input_ids.shape[1] > self.prompt_len:
            for i, tok in enumerate(input_ids[:, -1].tolist()):
                if not self.done[i]:
                    if tok == self.eos:
                        self.done[i] = True
                    else:
                        self.m.consume(i, tok)
        scores = scores.clone()
        live = [i for i, d in enumerate(self.done) if not d]
        if live:
            sub = scores[live]
            self.m.mask_(sub, live)
            scores[live] = sub
        for i, d in enumerate(self.done):
            if d:
                scores[i] = float("-inf")
                scores[i, self.eos] = 0.0
        return scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--continuous", action="store_true", help="also time the continuous batch on the one prompt")
    ap.add_argument("--skip-hf", action="store_true", help="leave out Hugging Face generate")
    ap.add_argument("--bf16", action="store_true", help="also time the decoder on a bf16 copy of the model")
    args = ap.parse_args()

    from transformers import LogitsProcessorList

    import synth.lm.decoding as constrained
    from synth.config_files import read_config
    from synth.lm import ModelChoice
    from synth.lm.continuous import sample_from_prompts
    from synth.lm.decoding_model import decoding_model
    from synth.records.generator import RecordGenerator
    from synth.run_config import build_config

    raw = read_config(ROOT / "synth" / "data" / "demo.toml")
    raw["data"]["path"] = "unused.csv"
    spec = build_config(raw).spec
    gen = RecordGenerator(spec, ModelChoice(model="smollm2", finetune="full"))
    model, tok = gen.model.eval(), gen.tokenizer
    prompt_ids, budget = gen._prompt_ids(), gen.max_record_tokens()
    common = dict(batch_size=args.batch, max_record_tokens=budget, temperature=args.temperature, progress=False)

    constrained.sample_texts(model, tok, gen.grammar, prompt_ids, 4, seed=1, **common)  # warm-up
    stack = contextlib.ExitStack()
    low = stack.enter_context(decoding_model(model, "bf16")) if args.bf16 else None
    if low is not None:
        constrained.sample_texts(low, tok, gen.grammar, prompt_ids, 4, seed=1, **common)
    ll_tok = tok.llguidance()
    real = constrained.GrammarMatchers
    rows = []
    for r in range(args.repeats):  # interleaved, so machine noise hits all three alike
        t0 = time.perf_counter()
        texts, stats = constrained.sample_texts(model, tok, gen.grammar, prompt_ids, args.n, seed=r, **common)
        ours = time.perf_counter() - t0
        lengths = [len(tok.encode(t)) for t in texts]
        constrained.GrammarMatchers = lambda _ll, _g, n_rows, _l=lengths: _LengthOnly(_l[:n_rows], tok.eos_token_id)
        try:
            t0 = time.perf_counter()
            _, free_stats = constrained.sample_texts(model, tok, gen.grammar, prompt_ids, len(lengths), seed=r,
                                                     **{**common, "batch_size": len(lengths)})
            free = time.perf_counter() - t0
        finally:
            constrained.GrammarMatchers = real
        hf_tokens, t0 = 0, time.perf_counter()
        with torch.no_grad():
            for start in range(0, args.n if not args.skip_hf else 0, args.batch):
                b = min(args.batch, args.n - start)
                ids = torch.tensor([prompt_ids] * b)
                mask = _HFMask(real(ll_tok, gen.grammar, b), ids.shape[1], tok.eos_token_id)
                out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                     logits_processor=LogitsProcessorList([mask]), do_sample=True,
                                     temperature=args.temperature, top_p=None, top_k=None,
                                     max_new_tokens=budget + 1, eos_token_id=tok.eos_token_id,
                                     pad_token_id=tok.pad_token_id)
                hf_tokens += int((out[:, ids.shape[1]:] != tok.eos_token_id).sum()) + b
        hf = time.perf_counter() - t0
        row = {"ours": stats.tokens / ours, "free": free_stats.tokens / free, "hf": hf_tokens / max(hf, 1e-9),
               "grammar_share": stats.extra["mask_seconds"] / ours, "rec_s": stats.emitted / ours}
        if args.continuous:
            t0 = time.perf_counter()
            _, cont_stats = sample_from_prompts(model, tok, [prompt_ids] * args.n, grammar=gen.grammar, seed=r,
                                                **common)
            cont = time.perf_counter() - t0
            row.update(continuous=cont_stats.tokens / cont, continuous_rec_s=cont_stats.emitted / cont)
        if low is not None:
            t0 = time.perf_counter()
            _, low_stats = constrained.sample_texts(low, tok, gen.grammar, prompt_ids, args.n, seed=r, **common)
            took = time.perf_counter() - t0
            row.update(bf16=low_stats.tokens / took, bf16_rec_s=low_stats.emitted / took)
        rows.append(row)
        print(f"repeat {r}: dpsynth constrained {row['ours']:.1f} tok/s ({row['rec_s']:.2f} rec/s, grammar "
              f"work {row['grammar_share']:.1%} of the time), no mask {row['free']:.1f} tok/s, "
              f"HF generate + mask {row['hf']:.1f} tok/s"
              + (f", continuous batch {row['continuous']:.1f} tok/s ({row['continuous_rec_s']:.2f} rec/s)"
                 if args.continuous else "")
              + (f", bf16 copy {row['bf16']:.1f} tok/s ({row['bf16_rec_s']:.2f} rec/s)" if low is not None else ""),
              flush=True)

    def med(key):
        return sorted(x[key] for x in rows)[len(rows) // 2]

    print(f"\n{args.n} records, batch {args.batch}, SmolLM2-135M-Instruct, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}:")
    print(f"  dpsynth decoder constrained {med('ours'):.1f} tok/s = {med('ours') / med('free'):.3f}x the same "
          f"decoder without the mask (grammar work {med('grammar_share'):.1%} of the time)"
          + ("" if args.skip_hf else f" and {med('ours') / med('hf'):.2f}x Hugging Face generate + the same mask"))
    if args.continuous:
        print(f"  continuous batch on the one prompt {med('continuous'):.1f} tok/s "
              f"({med('continuous_rec_s'):.2f} rec/s) = {med('continuous') / med('ours'):.3f}x the decoder (1) "
              f"({med('continuous_rec_s') / med('rec_s'):.3f}x in records/s)")
    if low is not None:
        print(f"  the decoder on a bf16 copy {med('bf16'):.1f} tok/s ({med('bf16_rec_s'):.2f} rec/s) = "
              f"{med('bf16') / med('ours'):.3f}x the fp32 decoder (1)")
    stack.close()

if __name__ == "__main__":
    main()
