"""The DP engine: per-unit clipping fused into each layer's backward pass.

It attaches to the user's model (no wrapper): each module that owns a trainable
parameter gets its forward routed through the registered rule while a
micro-batch is being captured, and every trainable parameter gets a guard that
raises if a gradient ever reaches it any other way.  ``model.generate()`` and
``save_pretrained()`` keep working; ``detach()`` (or leaving the ``with`` block)
restores the model exactly.

One micro-batch::

    with engine.micro_batch(n_rows=B, unit_index=None):
        loss = per_sample_losses.sum()
        loss.backward()          # clipped sums land in p.grad, nothing per-sample survives
    # then, once per logical batch: trainer.noise.privatize_gradients(...)

Clipping modes (parameter *groups* are the connected sets of modules and the
parameters they share, so a tied embedding / LM head is one group):

* ``per_layer``: group l is clipped to C_l = C / sqrt(L) inside the backward of its
  last use; the clipped sum is written straight away.
* ``flat``: every group's per-unit norm is taken during backward (book-keeping);
  when the micro-batch's backward is over, one clip factor per unit scales all
  groups' sums.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from .clipping import grads as G
from .clipping.registry import rule_for
from .distributed import refuse_wrapped_model
from .errors import ConfigError, PrivacyViolationError, UnsupportedLayerError
from .units import UnitPlan

ClippingMode = Literal["per_layer", "flat"]


def clip_factors(norms: Tensor, threshold: float, *, automatic: bool = False) -> Tensor:
    """Per-unit scale so that factor * norm <= threshold.

    ``automatic`` normalises instead of clipping (Bu et al. 2022, AUTO-S): C / (norm + 0.01).
    """
    if automatic:
        return threshold / (norms + 0.01)
    return (threshold / (norms + 1e-6)).clamp(max=1.0)


@dataclass
class _Group:
    params: list[str]
    threshold: float = 0.0
    expected: int = 0  # forward calls in this micro-batch
    received: int = 0  # backward deliveries
    reps: list[tuple[str, object]] = field(default_factory=list)
    norm_sq: Tensor | None = None  # flat mode: kept until the micro-batch ends


class DPEngine:
    """Fused per-unit clipping on a PyTorch / Hugging Face model.

    Args:
        model: the model whose trainable parameters are trained privately.
        max_grad_norm: C, the bound on each unit's whole gradient.
        clipping: ``"per_layer"`` (default) or ``"flat"``.
        automatic_clipping: normalise every unit's gradient instead of clipping it.
        norm_method: ``"auto"`` (cost model per layer), ``"ghost"`` or ``"instantiate"``.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        max_grad_norm: float,
        clipping: ClippingMode = "per_layer",
        automatic_clipping: bool = False,
        norm_method: G.NormMethod = "auto",
    ):
        if not max_grad_norm > 0:
            raise ConfigError(f"max_grad_norm must be > 0, got {max_grad_norm}")
        if clipping not in ("per_layer", "flat"):
            raise ConfigError(f"clipping must be 'per_layer' or 'flat', got {clipping!r}")
        if norm_method not in ("auto", "ghost", "instantiate"):
            raise ConfigError(f"norm_method must be auto, ghost or instantiate, got {norm_method!r}")
        self.model = model
        self.max_grad_norm = float(max_grad_norm)
        self.clipping = clipping
        self.automatic_clipping = automatic_clipping
        self.norm_method = norm_method
        self._hooked: dict[str, nn.Module] = {}
        self._handles: list = []
        self._saved_forward: dict[str, object] = {}
        self._plan: UnitPlan | None = None
        self._groups: dict[int, _Group] = {}
        self._group_of_module: dict[str, int] = {}
        self._params: dict[str, nn.Parameter] = {}
        self._attached = False
        self._units_seen: set = set()
        self._forward_calls: dict[str, int] = {}  # per module, calls opened outside backward (this micro-batch)
        self._recomputed: dict[str, int] = {}  # per module, of those, re-opened by checkpoint recomputation
        refuse_wrapped_model(model)
        self._batch_norms = [(n, m) for n, m in model.named_modules()
                             if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.attach()

    # ------------------------------------------------------------------ set-up
    @property
    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        return dict(self._params)

    @property
    def groups(self) -> list[list[str]]:
        """The clipping groups: parameter names clipped together (a tied weight joins its modules)."""
        return [list(g.params) for g in self._groups.values()]

    def attach(self) -> None:
        """Validate every trainable parameter, then route supported modules through their rules."""
        if self._attached:
            return
        plan = _plan_modules(self.model)
        self._params = plan.params
        self._groups = {gid: _Group(params=names) for gid, names in plan.groups.items()}
        self._group_of_module = plan.group_of_module
        self._local_names = plan.local_names
        n_groups = max(1, len(self._groups))
        for group in self._groups.values():
            group.threshold = self.max_grad_norm / math.sqrt(n_groups)
        for name, module in plan.modules.items():
            self._hooked[name] = module
            self._install_forward(name, module, plan.rules[name])
        for name, p in self._params.items():
            self._handles.append(p.register_hook(_leak_guard(name)))
        self._attached = True

    def detach(self) -> None:
        """Restore the model: original forwards, no hooks."""
        for name, module in self._hooked.items():
            saved = self._saved_forward.pop(name)
            if saved is None:
                module.__dict__.pop("forward", None)
            else:
                module.forward = saved
        for h in self._handles:
            h.remove()
        self._hooked.clear()
        self._handles.clear()
        self._attached = False

    def __enter__(self) -> "DPEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.detach()

    def _install_forward(self, name: str, module: nn.Module, rule) -> None:
        self._saved_forward[name] = module.__dict__.get("forward")
        original = module.forward
        engine = self

        def dp_forward(*args, **kwargs):
            if engine._plan is None or not torch.is_grad_enabled():
                return original(*args, **kwargs)
            engine._plan.observe(name, next((a for a in (*args, *kwargs.values()) if isinstance(a, Tensor)), None),
                                 layout=rule.layout)
            return rule.forward(module, engine._open_call(name, original), *args, **kwargs)

        module.forward = dp_forward

    # ------------------------------------------------------------- micro-batch
    @contextlib.contextmanager
    def micro_batch(self, n_rows: int, unit_index: Tensor | None = None, *, unit_ids=None):
        """Capture one micro-batch of ``n_rows`` rows; ``unit_index`` maps rows to privacy units.

        ``unit_ids`` names each unit of this micro-batch (one hashable per unit, in unit_index
        order): required with ``unit_index`` (a unit of several rows must not be split over two
        micro-batches of one logical batch: it would be clipped twice), optional otherwise.  A
        logical batch starts when every trainable gradient is None (after
        ``optimizer.zero_grad(set_to_none=True)``) or at ``new_logical_batch()``.
        """
        if self._plan is not None:
            raise RuntimeError("micro_batch() is already open; finish that backward first")
        self._check_row_mixing_modules()
        plan = UnitPlan(n_rows, unit_index)
        self._check_unit_ids(plan, unit_index, unit_ids)
        self._plan = plan
        for g in self._groups.values():
            g.expected = g.received = 0
            g.reps.clear()
            g.norm_sq = None
        self._forward_calls.clear()
        self._recomputed.clear()
        try:
            yield self
            self._finish()
        finally:
            self._plan = None
            for g in self._groups.values():
                g.reps.clear()
                g.norm_sq = None

    def forget_units(self, unit_ids) -> None:
        """Un-see units whose micro-batch was refused before it accumulated anything (to retry it)."""
        self._units_seen.difference_update(unit_ids)

    def new_logical_batch(self) -> None:
        """Forget the units seen so far: the next micro-batches belong to a new logical batch."""
        self._units_seen.clear()

    def _check_unit_ids(self, plan: UnitPlan, unit_index, unit_ids) -> None:
        if unit_ids is None:
            if unit_index is not None:
                raise ConfigError("micro_batch(unit_index=...) needs unit_ids (one id per unit) so that the engine can "
                                  "refuse a unit split over two micro-batches of one logical batch")
            return
        unit_ids = list(unit_ids)
        if len(unit_ids) != plan.n_units:
            raise ConfigError(f"unit_ids has {len(unit_ids)} entries for the micro-batch's {plan.n_units} units")
        if all(p.grad is None for p in self._params.values()):
            self._units_seen.clear()  # gradients are empty: a new logical batch
        here: set = set()
        for unit in unit_ids:
            if unit in self._units_seen or unit in here:
                break
            here.add(unit)
        else:
            self._units_seen.update(here)
            return
        raise PrivacyViolationError(
            f"unit {unit!r} already contributed to this logical batch: a unit split over two micro-batches "
            "(or given twice) would be clipped twice and move the sum by more than C. Put all of a unit's rows "
            "in one micro-batch; call engine.new_logical_batch() (or zero the gradients with set_to_none=True) "
            "when a new step begins"
        )

    def _check_row_mixing_modules(self) -> None:
        """Frozen modules whose output for one row depends on other rows (BatchNorm on batch
        statistics) break per-unit clipping: one unit moves every row's gradient."""
        mixing = [name for name, m in self._batch_norms if m.training or not m.track_running_stats]
        if mixing:
            raise UnsupportedLayerError(
                f"these BatchNorm modules normalise with the batch's statistics, which mixes the rows of a "
                f"micro-batch (one unit would move every other row's gradient): {', '.join(mixing[:10])}. Put them "
                "in eval mode (module.eval(): running statistics, fixed during training) after model.train(), "
                "or replace them with GroupNorm / LayerNorm."
            )

    def _open_call(self, module_name: str, original) -> "_Call":
        """A forward call of a hooked module; it counts as one more use of its group unless it is
        gradient checkpointing re-running, during backward, a forward already counted (the
        non-reentrant mode, transformers' default: its recomputed outputs are never backpropagated,
        the original call delivers).  Counted, it would hold the group, and every per-unit
        representation it gathers, until the micro-batch ends.  The reentrant mode runs the original
        forward without grad (not routed here) and backpropagates its recomputation: that one counts."""
        gid = self._group_of_module[module_name]
        in_backward = torch._C._current_graph_task_id() != -1
        if in_backward and self._recomputed.get(module_name, 0) < self._forward_calls.get(module_name, 0):
            self._recomputed[module_name] = self._recomputed.get(module_name, 0) + 1
        else:
            if not in_backward:
                self._forward_calls[module_name] = self._forward_calls.get(module_name, 0) + 1
            self._groups[gid].expected += 1
        return _Call(self, module_name, gid, original)

    # ------------------------------------------------------- backward delivery
    def _deliver(self, gid: int, reps: dict[str, object]) -> None:
        self._plan.check_layout()  # every forward of the micro-batch is done once backward delivers
        group = self._groups[gid]
        if group.received >= group.expected:
            raise PrivacyViolationError(
                f"a second backward reached {group.params[0]!r} in one engine.micro_batch() block: its rows would "
                "be counted twice. Call backward once per micro-batch (sum the losses first)."
            )
        group.reps.extend(reps.items())
        group.received += 1
        if group.received == group.expected:
            self._complete(group)

    def _complete(self, group: _Group) -> None:
        """All uses of the group are in: clip it (per_layer) or record its norms (flat)."""
        if not group.reps:
            return
        if self.clipping == "per_layer":
            self._clip_group(group)
            group.reps.clear()
        else:
            group.norm_sq = _group_norm_sq(group.reps)
            group.reps[:] = [(n, _maybe_densify(r)) for n, r in group.reps]

    def _clip_group(self, group: _Group) -> None:
        clip = lambda n, c: clip_factors(n, c, automatic=self.automatic_clipping)  # noqa: E731
        names = [n for n, _ in group.reps]
        fusable = [
            i for i, (_, r) in enumerate(group.reps) if isinstance(r, G.FactoredGrad) and r.method == "instantiate"
        ]
        if len(set(names)) == len(names) and len(fusable) == 1:
            # one instantiated weight (+ dense biases): clip chunk by chunk while in cache
            k = fusable[0]
            rest = [r for i, (_, r) in enumerate(group.reps) if i != k]
            extra = sum(r.norm_sq() for r in rest) if rest else None
            total, norms = G.clip_instantiated(group.reps[k][1], group.threshold, clip, extra)
            factors = clip(norms, group.threshold)  # the same factors the chunks were clipped with
            self._accumulate(names[k], total)
            for i, (n, r) in enumerate(group.reps):
                if i != k:
                    self._accumulate(n, r.weighted_sum(factors.to(_dtype(r))))
            return
        factors = clip(_group_norm_sq(group.reps).sqrt(), group.threshold)
        for n, r in group.reps:
            self._accumulate(n, r.weighted_sum(factors.to(_dtype(r))))

    @torch.no_grad()
    def _finish(self) -> None:
        """End of the micro-batch's backward: clip what is still pending.

        It runs after autograd's backward, where grad mode is on again: a layer's saved input
        (an activation that requires grad) would otherwise make the clipped sum a graph node,
        holding the micro-batch's activations through p.grad."""
        for g in self._groups.values():
            if g.reps and g.norm_sq is None:
                self._complete(g)  # a use whose output never reached the loss
        if self.clipping != "flat":
            return
        norm_sqs = [g.norm_sq for g in self._groups.values() if g.norm_sq is not None]
        if not norm_sqs:
            return
        norms = torch.stack([n.to(norm_sqs[0]) for n in norm_sqs]).sum(0).sqrt()
        factors = clip_factors(norms, self.max_grad_norm, automatic=self.automatic_clipping)
        for g in self._groups.values():
            for n, r in g.reps:
                self._accumulate(n, r.weighted_sum(factors.to(_dtype(r))))

    def _accumulate(self, name: str, clipped_sum: Tensor) -> None:
        p = self._params[name]
        clipped_sum = clipped_sum.to(p.dtype).view_as(p)
        if p.grad is None:
            p.grad = clipped_sum
        else:
            p.grad.add_(clipped_sum)


class _Call:
    """The engine's handle for one forward call of one hooked module."""

    def __init__(self, engine: DPEngine, module_name: str, gid: int, original):
        self.engine, self.module_name, self.gid = engine, module_name, gid
        self.original = original  # the module's own forward, for rules that reuse it
        self.plan = engine._plan

    @property
    def n_rows(self) -> int:
        return self.plan.n_rows

    def check_rows(self, t: Tensor) -> None:
        if t.shape[0] != self.plan.n_rows:
            raise UnsupportedLayerError(
                f"module '{self.module_name}' ran on a tensor whose first dimension is {t.shape[0]}, "
                f"but the micro-batch has {self.plan.n_rows} rows: its input is not per-sample "
                "(flattened or broadcast), so per-sample clipping cannot be done. Keep the batch "
                "dimension first, or freeze this module."
            )

    def factored(self, rows: Tensor, cols: Tensor, *, acc_dtype: torch.dtype, n_rows: int | None = None):
        """Per-row factors (B, T, .) -> a per-unit FactoredGrad with the cost model's method."""
        rows = self.plan.tokens(rows if n_rows is not None else rows.to(acc_dtype))
        cols = self.plan.tokens(cols.to(acc_dtype))
        rep = G.FactoredGrad(rows=rows, cols=cols, n_rows=n_rows)
        method = self.engine.norm_method
        if n_rows is not None:
            method = "ghost"
        elif method == "auto":
            method = G.choose_norm_method(
                cols.shape[1], rows.shape[-1], cols.shape[-1], keeps_sum=self.engine.clipping == "per_layer"
            )
        rep.method = method
        return rep

    def dense(self, per_row: Tensor, *, acc_dtype: torch.dtype) -> G.DenseGrad:
        return G.DenseGrad(self.plan.dense(per_row.to(acc_dtype)))

    def deliver(self, reps: dict[str, object]) -> None:
        if self.plan is not self.engine._plan:
            raise RuntimeError(
                f"backward reached '{self.module_name}' after its engine.micro_batch() block had closed: "
                "call loss.backward() inside the `with engine.micro_batch(...)` block"
            )
        names = self.engine._local_names[self.module_name]  # local name -> canonical (tied) name
        self.engine._deliver(self.gid, {names[k]: v for k, v in reps.items()})


# ----------------------------------------------------------------- helpers
def _dtype(rep) -> torch.dtype:
    return rep.per_unit.dtype if isinstance(rep, G.DenseGrad) else rep.cols.dtype


def _group_norm_sq(reps: list[tuple[str, object]]) -> Tensor:
    """Per-unit squared norm of the group's whole gradient, cross terms of tied uses included."""
    by_param: dict[str, list] = {}
    for name, rep in reps:
        by_param.setdefault(name, []).append(rep)
    total = None
    for uses in by_param.values():
        for i, a in enumerate(uses):
            term = a.norm_sq()
            for b in uses[i + 1 :]:
                term = term + 2 * G.inner(a, b)
            total = term if total is None else total + term.to(total)
    # cross terms of uses that cancel can leave -1e-16: a norm² below 0 would make sqrt NaN
    return total.clamp(min=0)


def _maybe_densify(rep):
    """Flat mode: keep small instantiated gradients (LoRA) rather than re-deriving them."""
    if isinstance(rep, G.FactoredGrad) and not rep.ids and rep.method == "instantiate":
        r, c = rep.shape
        if r * c <= rep.cols.shape[1] * (r + c):
            return G.DenseGrad(rep.instantiate(slice(None)))
    return rep


def _leak_guard(name: str):
    def guard(grad: Tensor | None):
        if grad is None:  # autograd announces the None our rules return for the weight
            return None
        raise PrivacyViolationError(
            f"parameter '{name}' received a gradient outside the DP engine (it was used outside the "
            "module that owns it, or backward ran outside engine.micro_batch()). Training it this way "
            "would not be private; freeze it or route its use through a supported module."
        )

    return guard


@dataclass
class _ModulePlan:
    params: dict[str, nn.Parameter]
    modules: dict[str, nn.Module]
    rules: dict[str, object]
    groups: dict[int, list[str]]
    group_of_module: dict[str, int]
    local_names: dict[str, dict[str, str]]


def _plan_modules(model: nn.Module) -> _ModulePlan:
    """Find the modules to hook, refuse unsupported trainable parameters, group tied ones."""
    params: dict[str, nn.Parameter] = {}
    first_name: dict[int, str] = {}
    modules, rules, module_params, local_names = {}, {}, {}, {}
    seen_modules: set[int] = set()
    unsupported, low_precision = [], []
    for mod_name, module in model.named_modules(remove_duplicate=False):
        own = [(n, p) for n, p in module.named_parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        for n, p in own:
            if p.dtype not in (torch.float32, torch.float64):
                low_precision.append((f"{mod_name}.{n}" if mod_name else n, p.dtype))
        rule = rule_for(module)
        if rule is None or any(n not in rule.handles for n, _ in own):
            for n, _ in own:
                if rule is None or n not in rule.handles:
                    unsupported.append((f"{mod_name}.{n}" if mod_name else n, type(module).__name__))
            continue
        if id(module) in seen_modules:
            continue  # the same module object reached by a second path: hooked once
        seen_modules.add(id(module))
        names, local = [], {}
        for n, p in own:
            canonical = first_name.setdefault(id(p), f"{mod_name}.{n}" if mod_name else n)
            params[canonical] = p
            names.append(canonical)
            local[n] = canonical
        modules[mod_name], rules[mod_name], module_params[mod_name] = module, rule, names
        local_names[mod_name] = local
    if low_precision:
        listing = "\n".join(f"  - {p} ({str(d).replace('torch.', '')})" for p, d in low_precision[:10])
        more = f"\n  ... and {len(low_precision) - 10} more" if len(low_precision) > 10 else ""
        raise UnsupportedLayerError(
            "these trainable parameters are not fp32: their clipped sums would be accumulated in low precision, "
            f"and the rounding breaks the bound of C on one unit's influence:\n{listing}{more}\n"
            "Load the model in fp32 (model.float(), or from_pretrained(..., dtype=torch.float32)); for bf16 "
            "speed keep fp32 parameters and compute in bf16 (TrainConfig(dtype='bf16'), autocast)."
        )
    if unsupported:
        listing = "\n".join(f"  - {p} (in a {t})" for p, t in unsupported)
        raise UnsupportedLayerError(
            "these trainable parameters are in modules the DP engine cannot clip per sample:\n"
            f"{listing}\nFreeze them (param.requires_grad_(False)), train with LoRA, or register a "
            "rule with trainer.register_layer(ModuleType, handles=(...))."
        )
    # union-find: modules sharing a parameter form one clipping group
    parent = {m: m for m in modules}

    def find(m):
        while parent[m] != m:
            parent[m] = parent[parent[m]]
            m = parent[m]
        return m

    owner: dict[str, str] = {}
    for m, names in module_params.items():
        for n in names:
            if n in owner:
                parent[find(m)] = find(owner[n])
            else:
                owner[n] = m
    roots = sorted({find(m) for m in modules})
    gid_of_root = {r: i for i, r in enumerate(roots)}
    group_of_module = {m: gid_of_root[find(m)] for m in modules}
    groups: dict[int, list[str]] = {i: [] for i in range(len(roots))}
    for m, names in module_params.items():
        for n in names:
            if n not in groups[group_of_module[m]]:
                groups[group_of_module[m]].append(n)
    return _ModulePlan(params, modules, rules, groups, group_of_module, local_names)
