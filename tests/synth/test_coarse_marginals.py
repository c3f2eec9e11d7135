"""AIM's coarse pair marginals (synth/marginals/grouping.py): the query against explicit matrices, its
sensitivity on neighbouring data sets, and a fine number's dependence that only the coarse pair recovers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synth.marginals import ColumnModel, ColumnModelSettings
from synth.marginals.aim import marginal
from synth.marginals.grouping import coarse_query, group_matrix
from synth.spec import ColumnSpec


def test_groups_cover_each_ordered_code_once_and_keep_the_missing_code_apart():
    m = group_matrix(size=11, ordered=10, groups=4)  # 10 bins and a "missing" code
    assert m.shape == (5, 11)
    np.testing.assert_array_equal(m.sum(axis=0), np.ones(11))  # every code in exactly one group
    assert m[-1].tolist() == [0.0] * 10 + [1.0]  # missing alone
    for row in m[:-1]:  # runs of adjacent bins, of 2 or 3
        idx = np.flatnonzero(row)
        assert idx.tolist() == list(range(idx[0], idx[-1] + 1)) and len(idx) in (2, 3)


def test_the_grouped_query_is_the_kronecker_product_of_its_groupings():
    import jax

    jax.config.update("jax_enable_x64", True)
    from mbi import Domain, Factor

    sizes = {"x": 9, "c": 3, "y": 7}
    query = coarse_query(("x", "c", "y"), sizes, {"x": 9, "y": 6}, groups=3)
    assert query.matrices[1] is None  # the categorical column stays fine
    full = np.kron(np.kron(query.matrices[0], np.eye(3)), query.matrices[2])  # the explicit (C-order) matrix
    values = np.random.default_rng(0).poisson(4.0, size=(9, 3, 7)).astype(float)
    np.testing.assert_allclose(query.apply(values), full @ values.ravel())
    factor = Factor(Domain(["x", "c", "y"], [9, 3, 7]), values)
    np.testing.assert_allclose(np.asarray(query(factor)), full @ values.ravel())
    assert query.op_norm_sq() == pytest.approx(np.linalg.norm(full, 2) ** 2)  # what mbi's step size relies on
    assert coarse_query(("x", "c"), {"x": 4, "c": 3}, {"x": 4}, groups=8) is None  # nothing finer than the groups


def test_a_row_moves_a_coarse_marginal_by_at_most_one():
    """The coarse marginal is measured with the fine one's σ: its sensitivity must be ≤ 1 (L1 and L2)."""
    rng = np.random.default_rng(1)
    sizes = {"x": 41, "y": 5}  # 40 bins and "missing"
    codes = {"x": rng.integers(0, 41, 300), "y": rng.integers(0, 5, 300)}
    query = coarse_query(("x", "y"), sizes, {"x": 40}, groups=8)
    base = query.apply(marginal(codes, sizes, ("x", "y")).reshape(41, 5))
    for x, y in [(0, 0), (40, 4), (17, 2)]:
        more = {"x": np.append(codes["x"], x), "y": np.append(codes["y"], y)}
        diff = query.apply(marginal(more, sizes, ("x", "y")).reshape(41, 5)) - base
        assert np.abs(diff).sum() == pytest.approx(1.0) and np.linalg.norm(diff) == pytest.approx(1.0)


def _dependent_rows(n: int = 1500) -> pd.DataFrame:
    """A finely binned rating (40 bins of 0.1) and a 1-5 star that rises with it (correlation ~0.35)."""
    rng = np.random.default_rng(0)
    rating = np.clip(rng.normal(3.2, 0.8, n), 1, 5).round(1)
    stars = np.clip(np.round(rating + rng.normal(0, 1.6, n)), 1, 5).astype(int)
    return pd.DataFrame({"rating": rating, "stars": pd.array(stars, dtype="Int64")})


COLUMNS = [ColumnSpec("rating", "float", min=1, max=5, bins=40, decimals=1), ColumnSpec("stars", "integer", min=1, max=5)]


def test_at_a_small_rho_only_the_coarse_pair_recovers_a_fine_numbers_dependence(tmp_path):
    frame = _dependent_rows()
    real = np.corrcoef(frame["rating"], frame["stars"].astype(float))[0, 1]
    got = {}
    for groups in (None, 8):
        settings = ColumnModelSettings(pgm_iters=300, coarse_groups=groups)
        model = ColumnModel.fit(frame, COLUMNS, 0.03, rng=np.random.default_rng(0), settings=settings)
        assert model.spend.rho == pytest.approx(0.03, rel=1e-9)
        rows = model.sample_frame(20_000, np.random.default_rng(1)).astype(float)
        got[groups] = (np.corrcoef(rows["rating"], rows["stars"])[0, 1], model)
    assert abs(got[None][0]) < 0.1 < real - 0.2  # the fine 40 × 5 pair costs too much noise: measured nowhere
    assert got[8][0] == pytest.approx(real, abs=0.1)
    coarse = got[8][1]
    assert "rating×stars (rating in 8 groups of bins)" in coarse.to_dict()["measured_marginals"]
    coarse.save_pretrained(tmp_path / "cm")
    again = ColumnModel.from_pretrained(tmp_path / "cm")
    assert again.to_dict()["measured_marginals"] == coarse.to_dict()["measured_marginals"]
    pd.testing.assert_frame_equal(again.sample_frame(50, np.random.default_rng(2)),
                                  coarse.sample_frame(50, np.random.default_rng(2)))


def test_the_run_config_turns_coarse_pairs_off_with_zero_and_refuses_one_group():
    from synth.run_config import ColumnsSection
    from trainer.errors import ConfigError

    assert ColumnsSection(model="aim").settings().coarse_groups == 8
    assert ColumnsSection(model="aim", coarse_groups=0).settings().coarse_groups is None
    with pytest.raises(ConfigError, match="columns.coarse_groups"):
        ColumnsSection(model="aim", coarse_groups=1)
