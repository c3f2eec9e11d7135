"""Would keeping freed blocks in glibc's heap speed up DP training on this CPU?  Step time and memory with
glibc's default heap (blocks above the mmap threshold, at most 32 MiB, come from fresh mmapped pages and go
back to the kernel at every free, so each step page-faults its large tensors in again) vs a heap that keeps
them (``mallopt`` thresholds at 2 GiB: a freed block serves the next step's tensor).  Measured in session
27 and not adopted in the trainer (README, "Heap reuse").

    python bench/heap_reuse.py --model smollm2-lora --seq 160 --batch 6 --bf16   # the LM studies' DP step
    python bench/heap_reuse.py --model llama                                      # engine_speed's Llama
    python bench/heap_reuse.py --model unet --batch 16

Speed: one process, the two settings interleaved step by step (``--pairs`` pairs, the order alternating);
each timed step follows an untimed one under the same setting, so the heap has settled.  Wall, user and
system CPU time and minor page faults are per step (medians).  Memory: peak RSS over ``--steps`` steps
minus the RSS before the first, in a fresh process per setting, as ``bench/engine_speed.py`` measures it.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import engine_speed as es  # noqa: E402

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)


@contextlib.contextmanager
def reuse_freed_memory():
    """Large blocks from the heap and kept there; on leaving, glibc's settled values back and a trim."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(M_MMAP_THRESHOLD, ctypes.c_int(2**31 - 1))
    libc.mallopt(M_TRIM_THRESHOLD, ctypes.c_int(2**31 - 1))
    try:
        yield
    finally:
        libc.mallopt(M_MMAP_THRESHOLD, ctypes.c_int(32 << 20))
        libc.mallopt(M_TRIM_THRESHOLD, ctypes.c_int(64 << 20))
        libc.malloc_trim(ctypes.c_size_t(0))


def build(args):
    model, vocab = es.build_model(args)
    model.train()
    # --bf16: the trainer's bf16 with the frozen base stored in bf16 (engine_speed's --frozen-bf16)
    es.prepare_for_training(model, args.model, "cpu", bf16=args.bf16, frozen_bf16=args.bf16)
    batches = es.make_batches(args, vocab, "cpu", 2)
    return es.make_step(args.mode, model, args, vocab), batches


def _setting(on: bool):
    return reuse_freed_memory() if on else contextlib.nullcontext()


def timed_pairs(args) -> dict:
    step, batches = build(args)
    step(batches[0])
    runs: dict[bool, list[tuple]] = {False: [], True: []}
    for i in range(args.pairs):
        for on in (False, True) if i % 2 == 0 else (True, False):
            with _setting(on):
                step(batches[1])  # settle the heap under this setting
                r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
                step(batches[1])
                wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
            runs[on].append((wall, r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime, r1.ru_minflt - r0.ru_minflt))
    out = {}
    for on, rows in runs.items():
        cols = list(zip(*rows, strict=True))
        out["reuse" if on else "default"] = {
            "wall_s": es._median(cols[0]), "user_s": es._median(cols[1]), "sys_s": es._median(cols[2]),
            "minor_faults": es._median(cols[3]), "walls": [round(w, 3) for w in cols[0]]}
    out["speedup"] = out["default"]["wall_s"] / out["reuse"]["wall_s"]
    return out


def peak_memory(args, on: bool) -> float:
    step, batches = build(args)
    base = es._rss_mib()
    with _setting(on):
        for _ in range(args.steps):
            step(batches[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["llama", "smollm2-lora", "unet"], default="smollm2-lora")
    ap.add_argument("--mode", default="per_layer", choices=["nonprivate", "per_layer", "flat"])
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast forward, frozen parameters in bf16")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--steps", type=int, default=4, help="steps of each memory run")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--memory-child", choices=["on", "off"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.image, args.d, args.layers, args.vocab, args.norm_method, args.device = 32, 512, 6, 8192, "auto", "cpu"
    if args.memory_child:
        print("RESULT", peak_memory(args, args.memory_child == "on"))
        return
    memory = {}
    for flag in ("off", "on"):
        done = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--memory-child", flag], capture_output=True,
                              text=True, check=True)
        memory["reuse" if flag == "on" else "default"] = float(done.stdout.split("RESULT")[-1])
    result = {"args": {k: v for k, v in vars(args).items() if k != "json"}, **timed_pairs(args), "memory_mib": memory}
    for key in ("default", "reuse"):
        r = result[key]
        print(f"{key:8s} wall {r['wall_s'] * 1e3:7.0f} ms  user {r['user_s'] * 1e3:7.0f}  sys {r['sys_s'] * 1e3:6.0f}  "
              f"faults {r['minor_faults']:>8.0f}  memory {memory[key]:6.0f} MiB   steps {r['walls']}")
    print(f"heap reuse: {result['speedup']:.2f}x the default's speed, "
          f"{memory['reuse'] / memory['default']:.2f}x its memory")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
