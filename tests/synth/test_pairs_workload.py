"""The pairs column model (``columns.model = pairs``): a public workload measured with Gaussian noise at one
σ, so the run keeps the PRV accountant; its ε checked against Google's dp_accounting (PLD), its noise
against the multiplier the ledger records, and a Water run end to end.  MST takes its candidate edges from
the same pair options (fine, or coarse where only the coarse marginal fits), tested here too."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from synth.marginals import ColumnModel, ColumnModelSettings
from synth.marginals.aim import AIMSettings
from synth.marginals.mst import run_mst
from synth.marginals.pairs import plan_workload
from synth.records.column_road import column_rho, record_spend
from trainer import PrivacyLedger
from trainer.accounting import calibrate_noise_multiplier

from .specs import WATER, water_column_road_config
from .test_column_model import COLUMNS, _frame  # the same small dependent table


def test_the_workload_is_every_pair_that_fits_coarse_where_only_a_coarse_one_does():
    sizes, ordered = {"a": 3, "b": 5, "c": 40}, {"c": 40}
    work, left_out = plan_workload(["a", "b", "c"], sizes, ordered, AIMSettings(max_cells=100, coarse_groups=8))
    assert work == [(("a", "b"), False), (("a", "c"), True), (("b", "c"), True)] and left_out == []
    # no coarse pairs: the two fine pairs with c are too large; c is then measured alone
    work, left_out = plan_workload(["a", "b", "c"], sizes, ordered, AIMSettings(max_cells=100, coarse_groups=None))
    assert work == [(("a", "b"), False), (("c",), False)] and left_out == [("a", "c"), ("b", "c")]
    # a model-size cap keeps the smallest pairs (in a public order) and names the rest
    work, left_out = plan_workload(["a", "b", "c", "d"], {**sizes, "d": 4}, ordered,
                                   AIMSettings(max_cells=1000, coarse_groups=None, max_model_size=0.004))
    assert [cl for cl, _ in work][:2] == [("a", "d"), ("a", "b")] and left_out
    assert {cl for cl, _ in work} | set(left_out) >= {("a", "b"), ("a", "c"), ("a", "d"), ("b", "c"), ("b", "d"),
                                                      ("c", "d")}


class _RecordingRng:
    """A numpy Generator that remembers the scale of every Gaussian draw."""

    def __init__(self, seed: int):
        self.rng, self.scales = np.random.default_rng(seed), []

    def normal(self, loc, scale, size):
        self.scales.append((scale, size))
        return self.rng.normal(loc, scale, size)

    def __getattr__(self, name):
        return getattr(self.rng, name)


def test_every_measurement_gets_the_noise_the_prv_ledger_composes():
    rho, k = 0.3, 2  # user level: at most 2 rows per unit
    rng = _RecordingRng(0)
    model = ColumnModel.fit(_frame(), COLUMNS, rho, rng=rng, settings=ColumnModelSettings(pgm_iters=200),
                            mechanism="pairs", sensitivity=k)
    spend = model.spend
    assert spend.select_rhos == [] and len(spend.measured) == 3  # every pair of three columns, no selection
    multiplier = math.sqrt(3 / (2 * rho))
    assert spend.measure_multipliers == pytest.approx([multiplier] * 3) and spend.rho == pytest.approx(rho)
    assert [s for s, _ in rng.scales] == pytest.approx([multiplier * k] * 3)  # σ = multiplier × sensitivity
    assert [n for _, n in rng.scales] == [15, 3 * 5, 5 * 5]  # a×b, a×c, b×c cells (c has 5 bins)
    rows = model.sample_frame(2000, np.random.default_rng(3))
    assert (rows.loc[rows["a"] == "x", "b"] <= 2).mean() > 0.7  # the a → b dependence survives at ρ = 0.3

    # one PRV ledger: three Gaussians and DP-SGD; ε as Google's PLD accountant composes them
    import dp_accounting
    from dp_accounting.pld import PLDAccountant

    ledger = PrivacyLedger(delta=1e-5, accountant="prv")
    record_spend(ledger, model)
    ledger.record("train", noise_multiplier=0.9, sample_rate=0.02, steps=100)
    independent = PLDAccountant(value_discretization_interval=1e-4)
    independent.compose(dp_accounting.GaussianDpEvent(multiplier), 3)
    independent.compose(dp_accounting.PoissonSampledDpEvent(0.02, dp_accounting.GaussianDpEvent(0.9)), 100)
    assert ledger.epsilon() == pytest.approx(independent.get_epsilon(1e-5), rel=0.02)


def test_mst_takes_a_pair_too_large_for_max_cells_as_a_coarse_edge():
    """a × c has 3 × 40 cells, over max_cells = 100; with c's 40 bins summed into 8 groups it has 24: the
    tree's one edge is measured on those 24 cells, at the σ the spend reports, and the model learns the
    dependence.  Without coarse groups MST can measure no pair at all (its behaviour before)."""
    data_rng = np.random.default_rng(0)
    a = data_rng.integers(0, 3, 2000)
    c = np.clip(a * 13 + data_rng.integers(0, 13, 2000), 0, 39)  # c's bin follows a
    codes, sizes, ordered = {"a": a, "c": c}, {"a": 3, "c": 40}, {"c": 40}
    rho = 2.0
    rng = _RecordingRng(1)
    model, spend = run_mst(codes, sizes, rho, rng, sensitivity=1, ordered=ordered,
                           settings=AIMSettings(max_cells=100, coarse_groups=8, pgm_iters=300))
    assert spend.measured == [("a",), ("c",), ("a", "c")] and spend.coarsened == [[], [], ["c"]]
    assert spend.coarse_groups == 8 and len(spend.select_rhos) == 1 and spend.rho == pytest.approx(rho)
    assert [n for _, n in rng.scales] == [3, 40, 3 * 8]  # the edge on the coarse cells
    assert [s for s, _ in rng.scales] == pytest.approx(spend.measure_multipliers)  # sensitivity 1
    fitted = np.asarray(model.project(("a", "c")).datavector()).reshape(3, 40)
    assert all(fitted[i, 13 * i:13 * i + 13].sum() / fitted[i].sum() > 0.8 for i in range(3))
    _, fine_only = run_mst(codes, sizes, rho, np.random.default_rng(1), ordered=ordered,
                           settings=AIMSettings(max_cells=100, coarse_groups=None, pgm_iters=50))
    assert fine_only.measured == [("a",), ("c",)] and fine_only.select_rhos == [] and fine_only.coarse_groups is None
    # no pair to measure: all of ρ goes to the one-way marginals (was a third, the rest unspent)
    assert fine_only.rho == pytest.approx(rho) and fine_only.measure_multipliers == pytest.approx([0.5 ** 0.5] * 2)


def test_mst_splits_rho_by_the_forest_the_measurable_pairs_allow():
    """Four columns where only a-e fits max_cells = 20 (the others' pairs have 60-900 cells): the tree can
    have 1 edge, not d - 1 = 3, so ρ is split over 1 selection and 1 measured pair and spent in full
    (split by d - 1 it left 5/9 of ρ unspent)."""
    data_rng = np.random.default_rng(0)
    codes = {"a": data_rng.integers(0, 3, 500), "c": data_rng.integers(0, 30, 500),
             "d": data_rng.integers(0, 30, 500), "e": data_rng.integers(0, 2, 500)}
    sizes = {"a": 3, "c": 30, "d": 30, "e": 2}
    rho = 1.0
    _, spend = run_mst(codes, sizes, rho, np.random.default_rng(1),
                       settings=AIMSettings(max_cells=20, coarse_groups=None, pgm_iters=50))
    assert [cl for cl in spend.measured if len(cl) == 2] == [("a", "e")]
    assert spend.select_rhos == pytest.approx([rho / 3]) and spend.rho == pytest.approx(rho)
    assert spend.measure_multipliers == pytest.approx([(4 / (2 * rho / 3)) ** 0.5] * 4 + [(1 / (2 * rho / 3)) ** 0.5])


def test_the_share_is_spent_under_prv_and_costs_the_lm_less_than_aim_under_rdp():
    """Water's bench settings (1,500 rows, 12 steps of 24, ε = 4): the column model takes half of ε alone
    under PRV, and the LM's σ stays below the one AIM's RDP ledger leaves it."""
    delta, q, steps = 1 / 1500**1.1, 24 / 1500, 12
    prv = PrivacyLedger(delta=delta, accountant="prv")
    rho = column_rho(prv, 4.0, 0.5)
    prv.record("columns", noise_multiplier=1 / math.sqrt(2 * rho), sample_rate=1.0, steps=1)
    assert prv.epsilon() == pytest.approx(2.0, rel=1e-3) and prv.epsilon() <= 2.0 + 1e-9
    sigma_pairs = calibrate_noise_multiplier(target_epsilon=4.0, delta=delta, sample_rate=q, steps=steps,
                                             accountant="prv", prior=prv.history)
    rho_aim = column_rho(PrivacyLedger(delta=delta, accountant="rdp"), 4.0, 0.5)
    sigma_aim = calibrate_noise_multiplier(target_epsilon=4.0, delta=delta, sample_rate=q, steps=steps,
                                           accountant="rdp", prior=[(1 / math.sqrt(2 * rho_aim), 1.0, 1)])
    assert sigma_pairs < 0.95 * sigma_aim and rho > rho_aim


def test_a_water_run_with_the_pairs_model_keeps_the_prv_accountant(tmp_path):
    from synth.pipeline import run
    from synth.planning import plan
    from synth.run_config import build_config

    if not WATER.exists():
        pytest.skip("shared data not present")
    raw = water_column_road_config(tmp_path, {"model": "pairs", "pgm_iters": 100})
    planned = plan(build_config(raw))  # the dry run plans the same PRV ledger
    result = run(build_config(raw), progress=False)
    card = json.loads((tmp_path / "run" / "export" / "dpsynth.json").read_text())
    assert planned.epsilon == pytest.approx(card["privacy"]["epsilon"], rel=1e-6)
    assert planned.stages[-1].noise_multiplier == pytest.approx(card["privacy"]["stages"][-1]["noise_multiplier"])
    stages = [(s["stage"], s["mechanism"], s["steps"]) for s in card["privacy"]["stages"]]
    assert stages == [("columns:measure", "gaussian", 1), ("train", "gaussian", 3)]
    assert card["privacy"]["accountant"] == "prv" and 3.9 < card["privacy"]["epsilon"] <= 4.0 + 1e-6
    assert card["conditioning"]["measured_marginals"] == ["overall_rating×rating"]
    readme = (tmp_path / "run" / "export" / "README.md").read_text()
    assert "a workload fixed before the data was read" in readme and "zCDP" not in readme
    rows = result["synthetic"]
    assert rows["rating"].between(1, 5).all() and rows["overall_rating"].between(1, 5).all()
