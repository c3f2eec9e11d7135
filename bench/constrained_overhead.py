"""Cost of grammar-constrained decoding: ms per decoding step with and without the mask, one run.

Same model (SmolLM2-135M-Instruct, offline), same prompt, same batch; the
unconstrained run is forced to the same number of steps, so the difference is
the llguidance mask (compute, unpack, apply) per step.

    python bench/constrained_overhead.py --batch 16 --repeats 3
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from transformers import LogitsProcessorList

    from synth.config_files import read_config
    from synth.records.constrained import GrammarMask
    from synth.records.generator import ModelChoice, RecordGenerator
    from synth.run_config import build_config

    raw = read_config(Path(__file__).resolve().parents[1] / "synth" / "data" / "demo.toml")
    raw["data"]["path"] = "unused.csv"
    spec = build_config(raw).spec
    gen = RecordGenerator(spec, ModelChoice(model="smollm2", finetune="full"))
    model, tok = gen.model.eval(), gen.tokenizer
    ll_tok = tok.llguidance()
    prompt = torch.tensor([gen._prompt_ids()] * args.batch)
    common = dict(input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=True, temperature=0.8,
                  top_p=None, top_k=None, pad_token_id=tok.pad_token_id)
    rows = []
    with torch.no_grad():
        for r in range(args.repeats):
            torch.manual_seed(r)
            mask = GrammarMask(ll_tok, gen.grammar, args.batch, prompt.shape[1], tok.eos_token_id)
            mask_time = [0.0]

            def timed(ids, scores, _mask=mask, _acc=mask_time):
                t = time.perf_counter()
                out = _mask(ids, scores)
                _acc[0] += time.perf_counter() - t
                return out

            t0 = time.perf_counter()
            out = model.generate(logits_processor=LogitsProcessorList([timed]), max_new_tokens=gen.max_record_tokens(),
                                 eos_token_id=tok.eos_token_id, **common)
            steps = out.shape[1] - prompt.shape[1]
            constrained = (time.perf_counter() - t0) / steps
            torch.manual_seed(r)
            t0 = time.perf_counter()
            model.generate(max_new_tokens=steps, min_new_tokens=steps, **common)
            free = (time.perf_counter() - t0) / steps
            masking = mask_time[0] / steps
            rows.append((steps, constrained, free, masking))
            print(f"repeat {r}: {steps} steps, constrained {constrained * 1e3:.1f} ms/step "
                  f"(of which the mask {masking * 1e3:.1f}), unconstrained {free * 1e3:.1f} ms/step")
    c = sorted(x[1] for x in rows)[len(rows) // 2]
    f = sorted(x[2] for x in rows)[len(rows) // 2]
    m = sorted(x[3] for x in rows)[len(rows) // 2]
    print(f"\nbatch {args.batch}, vocab {ll_tok.vocab_size}: median constrained {c * 1e3:.1f} ms/step, "
          f"unconstrained {f * 1e3:.1f} ms/step (whole-step overhead {c / f - 1:+.1%}); the mask itself "
          f"{m * 1e3:.1f} ms/step = {m / f:.1%} of an unconstrained step")


if __name__ == "__main__":
    main()
