from __future__ import annotations

import copy

import torch

from trainer import DPEngine

from .oracle import clipped_sum, max_rel_err, per_unit_grads


def engine_grads(model, loss_fn, x, micro, **engine_kw):
    """Clipped sums from the engine over ``micro``: a list of micro-batches, each a list of units (row lists)."""
    eng = DPEngine(model, **engine_kw)
    try:
        for units in micro:
            rows = [r for u in units for r in u]
            unit_index, unit_ids = None, None
            if any(len(u) > 1 for u in units):
                unit_index = torch.tensor([i for i, u in enumerate(units) for _ in u])
                unit_ids = [tuple(u) for u in units]
            with eng.micro_batch(len(rows), unit_index, unit_ids=unit_ids):
                loss_fn(model, x[rows]).sum().backward()
        return {n: p.grad.detach().clone() for n, p in eng.trainable_parameters.items()}, eng.groups
    finally:
        eng.detach()


def check_against_oracle(model, loss_fn, x, micro, *, clipping, norm_method="auto", automatic=False, tol=1e-6):
    """Assert engine == fp64 oracle with clipping active; returns the relative error."""
    units = [u for mb in micro for u in mb]
    probe = copy.deepcopy(model)
    names = list(DPEngine(probe, max_grad_norm=1.0).trainable_parameters)
    per_unit = per_unit_grads(model, loss_fn, x, units, names)
    c = _threshold_between_units(sorted(sum(g[n].pow(2).sum().item() for n in names) ** 0.5 for g in per_unit))
    got, groups = engine_grads(
        copy.deepcopy(model), loss_fn, x, micro,
        max_grad_norm=c, clipping=clipping, norm_method=norm_method, automatic_clipping=automatic,
    )
    want, scaled_norms = clipped_sum(per_unit, groups=groups, max_grad_norm=c, clipping=clipping, automatic=automatic)
    assert set(got) == set(want)
    assert max(scaled_norms) > 1.0, "clipping was never active: the test would prove nothing"
    err = max_rel_err(got, want)
    assert err < tol, f"relative error {err:.3g} vs the fp64 oracle"
    return err


def _threshold_between_units(totals: list[float]) -> float:
    """A clipping threshold halfway between two distinct unit norms, nearest the middle, so that about
    half the units are clipped and none sits on the threshold.  (The median itself fails when units
    tie: rows holding the same tokens in another order have equal gradients, and a tie at the top
    leaves no unit above C.)"""
    steps = [i for i in range(1, len(totals)) if totals[i] > totals[i - 1] * (1 + 1e-6)]
    assert steps, "every unit has the same gradient norm: clipping could not be tested"
    i = min(steps, key=lambda i: abs(i - len(totals) / 2))
    return (totals[i - 1] + totals[i]) / 2
