"""`torchrun --nproc_per_node=2 -m synth.cli.main run CONFIG` runs the records road unchanged: rank 0
makes the releases, both ranks train, rank 0 alone exports; the guarantee is the one-process one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from .specs import WATER

pytestmark = pytest.mark.skipif(not WATER.exists(), reason="shared data not present")
ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
[data]
path = "{data}"
invalid_rows = "clip"
[spec]
serialization = "json"
columns = [{{ name = "title", max_chars = 16 }}, {{ name = "rating", type = "integer", estimate = true }}]
[model]
model = "scratch"
[train]
target_epsilon = 4.0
steps = 3
expected_batch_size = 16
physical_batch_size = 8
progress = false
seed = 5
insecure_seed = true
[generate]
n = 4
seed = 1
[output]
dir = "{out}"
format = "jsonl"
"""


# the dpsynth entry with torch's global generator seeded, so that a from-scratch model starts from the same
# weights in every launch (rank 0's are broadcast; the one-process run must start from the same ones)
ENTRY = "import sys, torch; torch.manual_seed(0); from synth.cli.main import main; sys.exit(main())\n"


def _torchrun(args: list[str], world: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    entry = Path(args[-1]).parent / "seeded_dpsynth.py"
    entry.write_text(ENTRY)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world}",
           "--monitor-interval=0.2", str(entry), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400, cwd=ROOT)


def test_dpsynth_run_under_torchrun_equals_one_process(tmp_path):
    two, one = tmp_path / "two.toml", tmp_path / "one.toml"
    two.write_text(CONFIG.format(data=WATER, out=tmp_path / "run2"))
    one.write_text(CONFIG.format(data=WATER, out=tmp_path / "run1"))
    done = _torchrun(["run", str(two)])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    single = _torchrun(["run", str(one)], world=1)  # a fresh process: the same from-scratch initial weights
    assert single.returncode == 0, single.stderr[-5000:]
    card2 = json.loads((tmp_path / "run2" / "export" / "dpsynth.json").read_text())
    card1 = json.loads((tmp_path / "run1" / "export" / "dpsynth.json").read_text())
    # one release of the rating's domain, made by rank 0, and the same ledger as one process
    assert [s["stage"] for s in card2["privacy"]["stages"]] == ["domain:rating", "train"]
    assert card2["privacy"]["epsilon"] == pytest.approx(card1["privacy"]["epsilon"], rel=1e-12)
    assert card2["privacy"]["stages"] == card1["privacy"]["stages"]
    assert card2["rows"] == 4
    w2 = load_file(next((tmp_path / "run2" / "checkpoints").glob("checkpoint-3")) / "trainable.safetensors")
    w1 = load_file(next((tmp_path / "run1" / "checkpoints").glob("checkpoint-3")) / "trainable.safetensors")
    assert w1.keys() == w2.keys()
    for k in w1:  # the same global samples and noise; the sum is only added in another order
        assert (w1[k] - w2[k]).abs().max() < 1e-4, k
    assert done.stdout.count("ε") <= 2, "a worker rank printed a report too"


def test_a_road_that_cannot_train_across_ranks_is_refused_on_every_rank(tmp_path):
    cfg = tmp_path / "cols.toml"
    cfg.write_text(CONFIG.format(data=WATER, out=tmp_path / "cols") + '[columns]\nmodel = "aim"\n')
    done = _torchrun(["train", str(cfg)])
    assert done.returncode != 0
    assert "does not train across ranks yet" in done.stderr
    assert not (tmp_path / "cols" / "checkpoints").exists()
