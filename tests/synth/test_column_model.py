"""The column-model road: public codes, AIM's spend in the one ledger (checked against an independent
RDP accountant), neighbouring data sets, and a run on a census slice with no LM."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from synth.marginals import ColumnModel, ColumnModelSettings
from synth.marginals.aim import candidates_of, marginal, model_marginals, workload
from synth.marginals.coding import column_code
from synth.records.column_road import column_rho, record_spend, rows_for_column_model
from synth.spec import ColumnSpec
from trainer import PrivacyLedger
from trainer.errors import ConfigError

from .specs import ADULT

FAST = ColumnModelSettings(rounds=12, pgm_iters=150, max_model_size=2.0)


def test_codes_cover_the_public_domain_and_decode_inside_their_bin():
    rng = np.random.default_rng(0)
    cat = column_code(ColumnSpec("c", "categorical", categories=["a", "b"], nullable=True))
    assert cat.size == 3
    codes = cat.encode(pd.Series(["b", None, "a"], dtype="string"))
    assert codes.tolist() == [1, 2, 0] and cat.decode(codes, rng) == ["b", None, "a"]
    small = column_code(ColumnSpec("i", "integer", min=1, max=5))  # a code per value
    assert small.size == 5 and small.decode(small.encode(pd.Series([1, 5, 3])), rng) == [1, 5, 3]
    wide = column_code(ColumnSpec("w", "integer", min=0, max=99_999))  # 32 equal-width bins, zero on its own
    assert wide.size == 33
    values = pd.Series([0, 1, 3_124, 3_125, 99_999])
    codes = wide.encode(values)
    assert codes.tolist() == [0, 1, 1, 2, 32]
    assert wide.decode(np.zeros(20, dtype=int), rng) == [0] * 20  # a spike at zero decodes to zero
    for v, back in zip(values, wide.decode(codes, rng), strict=True):
        lo = wide.edges[wide.encode(pd.Series([v]))[0]]
        assert isinstance(back, int) and lo <= back < lo + 3_125.01
    shifted = column_code(ColumnSpec("s", "integer", min=5, max=99_999))  # no zero in the range: 32 bins
    assert shifted.size == 32
    signed = column_code(ColumnSpec("g", "float", min=-1, max=2, bins=4))  # an edge at zero: no bin straddles it
    assert 0.0 in signed.edges and signed.size == 5
    flt = column_code(ColumnSpec("f", "float", min=1, max=5, bins=4, decimals=1))
    codes = flt.encode(pd.Series([1.0, 2.9, 5.0]))
    assert codes.tolist() == [0, 1, 3]
    back = flt.decode(np.repeat(codes, 50), rng)
    assert all(1.0 <= b <= 2.0 for b in back[:50]) and all(round(b, 1) == b for b in back)
    with pytest.raises(ConfigError, match="category list"):
        column_code(ColumnSpec("c", "categorical", estimate=True))
    with pytest.raises(ConfigError, match="outside the public domain"):
        small.encode(pd.Series([7]))


def _rdp_epsilon_independent(rho: float, sgd: tuple[float, float, int], delta: float) -> float:
    """ε of a ρ-zCDP stage composed with subsampled-Gaussian DP-SGD, by Google's dp_accounting."""
    import dp_accounting
    from dp_accounting import rdp

    orders = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))  # the orders Opacus uses
    acc = rdp.RdpAccountant(orders)
    sigma, q, steps = sgd
    acc.compose(dp_accounting.ZCDpEvent(rho))
    acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
    return acc.get_epsilon(delta)


def test_a_zcdp_stage_composes_with_dp_sgd_as_an_independent_rdp_accountant_says():
    ledger = PrivacyLedger(delta=1e-5, accountant="rdp")
    ledger.record_zcdp("columns:select", rho=0.05)
    ledger.record("columns:measure", noise_multiplier=5.0, sample_rate=1.0, steps=3)  # ρ = 3/(2·25) = 0.06
    ledger.record("train", noise_multiplier=1.1, sample_rate=0.02, steps=200)
    assert ledger.epsilon() == pytest.approx(_rdp_epsilon_independent(0.11, (1.1, 0.02, 200), 1e-5), rel=1e-6)
    # a zCDP stage alone, by hand: ε = min over α of αρ + log((α−1)/α) − (log δ + log α)/(α − 1)
    alone = PrivacyLedger(delta=1e-6, accountant="rdp")
    alone.record_zcdp("s", rho=0.2)
    alphas = np.array([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)), dtype=float)
    by_hand = np.min(alphas * 0.2 + np.log((alphas - 1) / alphas) - (np.log(1e-6) + np.log(alphas)) / (alphas - 1))
    assert alone.epsilon() == pytest.approx(by_hand, rel=1e-9)
    prv = PrivacyLedger(delta=1e-5, accountant="prv")
    prv.record_zcdp("columns:select", rho=0.05)
    with pytest.raises(ConfigError, match="only the rdp accountant"):
        prv.epsilon()


def test_the_column_model_gets_its_share_of_what_is_left_of_the_target():
    ledger = PrivacyLedger(delta=1e-5, accountant="rdp")
    ledger.record("domain:x", noise_multiplier=10.0, sample_rate=1.0, steps=1)
    spent = ledger.epsilon()
    rho = column_rho(ledger, 4.0, 0.5)
    with_model = PrivacyLedger(delta=1e-5, accountant="rdp", events=list(ledger.events))
    with_model.record_zcdp("columns", rho=rho)
    assert with_model.epsilon() == pytest.approx(spent + 0.5 * (4.0 - spent), rel=1e-4)
    assert with_model.epsilon() <= spent + 0.5 * (4.0 - spent) + 1e-9


def _frame(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    a = rng.choice(["x", "y", "z"], size=n, p=[0.6, 0.3, 0.1])
    b = np.where(a == "x", rng.integers(1, 3, n), rng.integers(3, 6, n))  # b depends on a
    return pd.DataFrame({"a": pd.Series(a, dtype="string"), "b": pd.array(b, dtype="Int64"),
                         "c": rng.uniform(0, 10, n)})


COLUMNS = [ColumnSpec("a", "categorical", categories=["x", "y", "z"]), ColumnSpec("b", "integer", min=1, max=5),
           ColumnSpec("c", "float", min=0, max=10, bins=5, decimals=2)]


def test_aim_spends_exactly_its_rho_and_its_numpy_marginals_match_mbi(tmp_path):
    frame = _frame()
    model = ColumnModel.fit(frame, COLUMNS, 0.5, rng=np.random.default_rng(0), settings=FAST)
    assert model.spend.rho == pytest.approx(0.5, rel=1e-9)
    assert len(model.spend.select_rhos) >= 1 and len(model.spend.measure_multipliers) >= 3 + 1
    cliques = [("a",), ("a", "b"), ("b", "c"), ("a", "c")]
    ours = model_marginals(model.model, cliques)
    for cl in cliques:
        np.testing.assert_allclose(ours[cl], np.asarray(model.model.project(cl).datavector()), rtol=1e-6, atol=1e-6)
    ledger = PrivacyLedger(delta=1e-5, accountant="rdp")
    record_spend(ledger, model)
    pure = PrivacyLedger(delta=1e-5, accountant="rdp")
    pure.record_zcdp("all", rho=0.5)
    assert ledger.epsilon() == pytest.approx(pure.epsilon(), rel=1e-9)  # Gaussians + selections = ρ in RDP
    rows = model.sample_frame(2000, np.random.default_rng(3))
    assert set(rows["a"]) <= {"x", "y", "z"} and rows["b"].between(1, 5).all() and rows["c"].between(0, 10).all()
    # at ρ = 0.5 on 300 rows the strong a → b dependence survives
    assert (rows.loc[rows["a"] == "x", "b"] <= 2).mean() > 0.7
    model.save_pretrained(tmp_path / "cm")
    again = ColumnModel.from_pretrained(tmp_path / "cm")
    same = again.sample_frame(50, np.random.default_rng(9))
    pd.testing.assert_frame_equal(same, model.sample_frame(50, np.random.default_rng(9)))


def test_mst_measures_a_spanning_tree_inside_its_rho():
    model = ColumnModel.fit(_frame(), COLUMNS, 0.5, rng=np.random.default_rng(0), settings=FAST, mechanism="mst")
    assert model.spend.rho == pytest.approx(0.5, rel=1e-9) and model.mechanism == "mst"
    pairs = [cl for cl in model.spend.measured if len(cl) == 2]
    assert len(pairs) == 2 and len(model.spend.select_rhos) == 2  # a tree over 3 columns
    rows = model.sample_frame(2000, np.random.default_rng(3))
    assert (rows.loc[rows["a"] == "x", "b"] <= 2).mean() > 0.7  # the a-b edge is the one a tree must take


def test_model_marginals_survive_potentials_whose_products_underflow():
    """A star: one column in six cliques whose log-potentials peak at different values of it, so at every
    value at least four factors are e^-300: their product underflows float64, the log-space elimination
    does not (and agrees with mbi's)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from mbi import CliqueVector, Domain, Factor, MarkovRandomField
    from mbi.marginal_oracles import message_passing_stable

    names = ["c"] + [f"leaf{i}" for i in range(6)]
    domain = Domain(names, [3] * 7)
    cliques = [("c", leaf) for leaf in names[1:]]
    tables = {}
    for i, cl in enumerate(cliques):
        values = np.full((3, 3), -300.0)
        values[i % 3, :] = 0.0
        tables[cl] = Factor(domain.project(cl), values)
    potentials = CliqueVector(domain, cliques, tables)
    model = MarkovRandomField(potentials=potentials, marginals=message_passing_stable(potentials, 100.0), total=100.0)
    ours = model_marginals(model, [("leaf0", "leaf1"), ("leaf2", "leaf5")])
    for cl, m in ours.items():
        assert np.isfinite(m).all() and m.sum() == pytest.approx(100.0)
        np.testing.assert_allclose(m, np.asarray(model.project(cl).datavector()), rtol=1e-6, atol=1e-9)


def test_one_user_moves_every_measured_marginal_by_at_most_k():
    """User level: at most k rows per user are counted, so adding or removing a user (here one with
    500 rows) changes every workload marginal by at most k in L2 (the σ AIM adds is k × the multiplier)."""
    frame = _frame(200)
    users = [f"u{i % 50}" for i in range(200)]
    heavy = pd.DataFrame({"a": pd.Series(["z"] * 500, dtype="string"), "b": pd.array([5] * 500, dtype="Int64"),
                          "c": [9.9] * 500})
    k = 3
    codes = {c.name: c for c in (column_code(s) for s in COLUMNS)}
    sizes = {n: c.size for n, c in codes.items()}
    cands = candidates_of(workload(list(codes), sizes, 10_000))

    def answers(f: pd.DataFrame, u: list) -> dict:
        rows = rows_for_column_model(f.reset_index(drop=True), u, k, seed=0)
        data = {n: c.encode(rows[n].reset_index(drop=True)) for n, c in codes.items()}
        return {cl: marginal(data, sizes, cl) for cl in cands}

    without = answers(frame, users)
    with_user = answers(pd.concat([frame, heavy]), users + ["heavy"] * 500)
    for cl in cands:
        assert np.linalg.norm(with_user[cl] - without[cl]) <= k + 1e-9


@pytest.mark.skipif(not ADULT.exists(), reason="shared data not present")
def test_a_table_without_text_runs_on_the_column_model_alone_and_resumes(tmp_path):
    from synth.pipeline import generate, run
    from synth.run_config import build_config

    data = tmp_path / "adult.csv"
    cols = ["age", "education", "sex", "hours-per-week", "income"]
    pd.read_csv(ADULT)[cols].head(400).to_csv(data, index=False)
    spec = {"columns": [{"name": "age", "type": "integer", "min": 17, "max": 90},
                        {"name": "education", "type": "categorical", "estimate": True},
                        {"name": "sex", "type": "categorical", "categories": ["Female", "Male"]},
                        {"name": "hours-per-week", "type": "integer", "min": 1, "max": 99},
                        {"name": "income", "type": "categorical", "categories": ["<=50K", ">50K"]}]}
    raw = {"data": {"path": str(data)}, "spec": spec, "train": {"target_epsilon": 4.0, "seed": 0, "insecure_seed": True},
           "columns": {"model": "aim", "rounds": 12, "pgm_iters": 150, "max_model_size": 2.0},
           "generate": {"n": 400, "seed": 1}, "output": {"dir": str(tmp_path / "run")}}
    result = run(build_config(raw), progress=False)
    card = json.loads((tmp_path / "run" / "export" / "dpsynth.json").read_text())
    stages = [(s["stage"], s["mechanism"]) for s in card["privacy"]["stages"]]
    assert stages[0] == ("domain:education", "gaussian") and ("columns:select", "zcdp") in stages
    assert all(s not in ("train",) for s, _ in stages)  # no LM, no DP-SGD
    assert card["privacy"]["accountant"] == "rdp" and 3.9 < card["privacy"]["epsilon"] <= 4.0 + 1e-6
    assert "no language model" in card["model"]
    synthetic = result["synthetic"]
    assert len(synthetic) == 400 and synthetic["age"].between(17, 90).all()
    assert synthetic["hours-per-week"].between(1, 99).all() and set(synthetic["income"]) <= {"<=50K", ">50K"}
    real = pd.read_csv(data)
    assert abs((synthetic["income"] == ">50K").mean() - (real["income"] == ">50K").mean()) < 0.1
    readme = (tmp_path / "run" / "export" / "README.md").read_text()
    assert "ρ-zCDP (exponential mechanism)" in readme
    # `dpsynth evaluate` with the run config alone: the derived grammar, SDMetrics on the table columns
    import yaml

    from synth.cli.main import main

    (tmp_path / "run.yaml").write_text(yaml.safe_dump(raw))
    assert main(["evaluate", "--real", str(data), "--synthetic", str(tmp_path / "run" / "export" / "synthetic.csv"),
                 "--spec", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "eval")]) == 0
    scores = {m["name"]: m["value"] for m in json.loads((tmp_path / "eval" / "report.json").read_text())["metrics"]}
    assert scores["cfg_pr"] == 1.0 and 0.5 < scores["quality/sdmetrics_overall"] <= 1.0
    assert scores["quality/real_holdout_sdmetrics_overall"] > scores["quality/sdmetrics_overall"] - 0.3
    # generate again from the saved generator: the same ledger, no refit
    again = generate(build_config({**raw, "output": {"dir": str(tmp_path / "run"), "overwrite": True}}), progress=False)
    assert again["epsilon"] == pytest.approx(card["privacy"]["epsilon"])
    assert math.isfinite(again["epsilon"])


def test_records_with_text_take_their_other_columns_from_the_column_model_and_text_from_the_lm(tmp_path):
    """Water: rating and overall_rating from AIM, the title written by the DP LM given them; one ledger."""
    from synth.pipeline import run
    from synth.records.generator import RecordGenerator
    from synth.run_config import build_config

    from .specs import WATER, water_column_road_config

    if not WATER.exists():
        pytest.skip("shared data not present")
    raw = water_column_road_config(tmp_path, {"model": "aim", "rounds": 8, "pgm_iters": 100})
    result = run(build_config(raw), progress=False)
    card = json.loads((tmp_path / "run" / "export" / "dpsynth.json").read_text())
    stages = [s["stage"] for s in card["privacy"]["stages"]]
    assert stages[-1] == "train" and "columns:select" in stages and "columns:measure" in stages
    assert card["privacy"]["epsilon"] <= 4.0 + 1e-6 and card["privacy"]["accountant"] == "rdp"
    assert card["conditioning"]["columns"] == ["overall_rating", "rating"]
    rows = result["synthetic"]
    assert rows["rating"].between(1, 5).all() and rows["overall_rating"].between(1, 5).all()
    assert (rows["overall_rating"].round(1) == rows["overall_rating"]).all()
    gen = RecordGenerator.from_pretrained(tmp_path / "run" / "generator")
    assert isinstance(gen.conditioning, ColumnModel) and gen.body_spec.names == ["title"]
    example = gen.examples(pd.DataFrame({"overall_rating": [4.2], "rating": [4], "title": ["nice"]}))[0]
    scored = [t for t, m in zip(example["input_ids"], example["loss_mask"], strict=True) if m]
    assert gen.tokenizer.decode(scored[:-1]) == '{"title": "nice"}'  # the modelled columns sit in the prompt


def test_the_candidate_order_does_not_depend_on_the_process_string_hashing():
    """The exponential mechanism picks a candidate by index: a seeded run must see the same order in
    every process (Python salts str hashes per process, so a set's order changes)."""
    import os
    import subprocess
    import sys

    code = ("from synth.marginals.aim import candidates_of, workload;"
            "cols = ['age', 'sex', 'income', 'race', 'hours'];"
            "print(list(candidates_of(workload(cols, dict.fromkeys(cols, 4), 100))))")
    orders = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": str(s)}).stdout for s in (1, 2, 3)}
    assert len(orders) == 1
