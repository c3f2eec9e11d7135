"""Data-parallel DP-SGD on 2 gloo ranks (torchrun, loopback): the guarantee is the one-process one.

The ranks run ``dist_worker.py``; this process runs the one-process reference."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from scipy import stats

from trainer import DPTrainer, TrainConfig
from trainer.distributed import Distribution, split_units
from trainer.errors import ConfigError

from . import dist_worker as W

WORKER = Path(W.__file__)


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--monitor-interval=0.2"]
# accelerate's launcher: --multi_gpu hands the processes to torch.distributed.run (gloo when there is no GPU)
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]


def _launch(scenario: str, out: Path, *, expect_ok: bool = True, launcher: list[str] = TORCHRUN
            ) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [*launcher, str(WORKER), scenario, str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    if expect_ok:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return done


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    _launch("suite", out)
    return out, [torch.load(out / f"suite_rank{r}.pt", weights_only=False) for r in range(2)]


def _allclose(a: dict, b: dict, rtol=1e-6, atol=1e-6) -> bool:
    """fp32 closeness: the W-rank sum adds in another order (observed max error 2.4e-7 on weights of
    scale 1; atol covers entries near 0)."""
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=rtol, atol=atol) for k in a)


def _bitwise(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("case,clipping,user_level", [("equal_per_layer_user", "per_layer", True),
                                                       ("equal_flat", "flat", False)])
def test_two_ranks_equal_one_process_on_the_same_global_sample(suite, case, clipping, user_level):
    """σ = 0, C below the norms (clipping active), micro-batched, 4 steps; rank 1 seeded differently and
    initialised differently: parameters allclose to one process, replicas bitwise equal."""
    _, ranks = suite
    ref_params, ref_steps = W.reference(clipping, user_level)
    a, b = ranks[0][case], ranks[1][case]
    assert _bitwise(a["params"], b["params"])
    assert _allclose(a["params"], ref_params)
    assert not _allclose(ref_params, {n: p.detach() for n, p in W.TinyLM(seed=100).named_parameters()}), \
        "training moved nothing: the comparison would be empty"
    # the ranks' units: disjoint, no unit split, their union the one-process sample
    assert len(a["steps"]) == len(b["steps"]) == len(ref_steps) == 4
    for mine, theirs, one in zip(a["steps"], b["steps"], ref_steps, strict=True):
        assert not set(mine) & set(theirs)
        assert sorted(mine + theirs) == sorted(one)
    assert a["losses"] == b["losses"]


def test_clipping_was_active_in_the_comparison():
    """C = 0.05 is below the units' gradient norms, so the equality above covers clipped sums."""
    model = W.TinyLM(seed=0)
    ex = W.examples()[0]
    logits = model(torch.tensor([ex["input_ids"]]))
    loss = torch.nn.functional.cross_entropy(logits[0, :-1], torch.tensor(ex["input_ids"][1:]))
    loss.backward()
    norm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.parameters()))
    assert norm > 10 * W.config().max_grad_norm


def test_noisy_replicas_stay_bitwise_identical_with_differently_seeded_ranks(suite):
    _, ranks = suite
    a, b = ranks[0]["noisy"], ranks[1]["noisy"]
    assert _bitwise(a["params"], b["params"])
    assert a["ledger"] == b["ledger"] and a["epsilon"] == b["epsilon"] and a["ledger_steps"] == 4


def test_noise_is_drawn_once_at_sigma_c_over_qn_on_every_rank(suite):
    """Zero gradients: the step's gradient is the noise, std σC/(qN) (χ² interval on 55,000
    coordinates), identical on both ranks whether their generators were seeded identically,
    differently, or one was advanced."""
    _, ranks = suite
    sigma, c, qn = 1.3, 0.7, 50.0
    for how in ("same", "different", "advanced"):
        noise0, noise1 = ranks[0]["noise"][how], ranks[1]["noise"][how]
        assert torch.equal(noise0, noise1), how
        n = noise0.numel()
        ss = noise0.double().pow(2).sum().item()
        lo, hi = math.sqrt(ss / stats.chi2.ppf(1 - 1e-7, n)), math.sqrt(ss / stats.chi2.ppf(1e-7, n))
        assert lo <= sigma * c / qn <= hi, how  # twice the noise (W draws added) would be √2 off
    assert torch.equal(ranks[0]["noise"]["same"], ranks[0]["noise"]["different"])  # rank 0's stream alone


def test_a_rank_with_no_unit_completes(suite):
    _, ranks = suite
    a, b = ranks[0]["empty_rank"], ranks[1]["empty_rank"]
    assert len(a["steps"]) == len(b["steps"]) == 10
    assert any((len(x) == 0) != (len(y) == 0) for x, y in zip(a["steps"], b["steps"], strict=True)), \
        "no step left exactly one rank empty"
    assert _bitwise(a["params"], b["params"])


def test_a_ddp_wrapped_model_is_refused_by_name(suite):
    _, ranks = suite
    for r in ranks:
        assert r["ddp_refusal"] is not None and "DistributedDataParallel" in r["ddp_refusal"]


def test_resume_after_one_rank_is_killed_matches_the_uninterrupted_run(suite):
    out, ranks = suite
    crashed = _launch("crash", out, expect_ok=False)
    assert crashed.returncode != 0
    assert (out / "crashed").is_dir()
    _launch("resume", out)
    resumed = [torch.load(out / f"resume_rank{r}.pt", weights_only=False) for r in range(2)]
    uninterrupted = ranks[0]["noisy"]
    for r in resumed:
        assert _bitwise(r["params"], uninterrupted["params"])
        assert r["ledger"] == uninterrupted["ledger"] and r["ledger_steps"] == 4
        assert r["epsilon"] == pytest.approx(uninterrupted["epsilon"], rel=1e-12)
    assert len(resumed[0]["steps"]) < 4, "the resumed run re-did every step: it did not resume"


def test_accelerate_launch_gives_the_torchrun_result(suite, tmp_path):
    """`accelerate launch --multi_gpu` (torch.distributed.run underneath): the same parameters, bit for bit,
    as torchrun, with and without noise, and the same ledger."""
    pytest.importorskip("accelerate")
    _, ranks = suite
    _launch("suite", tmp_path, launcher=ACCELERATE)
    launched = [torch.load(tmp_path / f"suite_rank{r}.pt", weights_only=False) for r in range(2)]
    for mine, theirs in zip(launched, ranks, strict=True):
        for case in ("equal_flat", "equal_per_layer_user", "noisy"):
            assert _bitwise(mine[case]["params"], theirs[case]["params"]), case
        assert mine["noisy"]["ledger"] == theirs["noisy"]["ledger"]


# ------------------------------------------------------------- one process
def test_split_units_keeps_units_whole_and_balances_tokens():
    batch = [[0], [1, 2], [3], [4, 5, 6], [7]]
    cost = [5, 1, 1, 9, 2, 2, 2, 4]
    shares = split_units(batch, 3, cost)
    assert sorted(u for s in shares for u in map(tuple, s)) == sorted(map(tuple, batch))
    loads = [sum(cost[i] for u in s for i in u) for s in shares]
    assert max(loads) - min(loads) <= max(cost)
    assert split_units([], 2, cost) == [[], []]


def test_a_data_loader_is_refused():
    from torch.utils.data import DataLoader

    with pytest.raises(ConfigError, match="DataLoader"):
        DPTrainer(W.TinyLM(), DataLoader(W.examples()), W.config())


def test_one_process_is_inactive_and_its_collectives_are_no_ops():
    d = Distribution.current()
    assert not d.active and d.is_main
    t = torch.ones(3)
    d.all_reduce_sum([t])
    assert torch.equal(t, torch.ones(3)) and d.broadcast_int(5) == 5 and d.sum_scalars([1, 2]) == [1.0, 2.0]
    d.check_same("x", 1)
    assert isinstance(W.config(), TrainConfig)
