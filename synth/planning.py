"""The dry run: what a records run will spend and do, before it trains (`dpsynth run --dry-run`,
``fit(..., dry_run=True)``).

The plan replays the pipeline's budget decisions on a scratch ledger, in the pipeline's order, with
the same functions (domain estimates at σ = spec.estimate_noise, the column model's ρ share, the
DP-SGD σ calibrated to what is left), so its ε per stage is the one the run will record.  It reads
the private data for its row count N only (δ, q), plus an optional timed probe of one DP-SGD step;
the plan is shown to the data owner and is not DP output.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

from trainer import PrivacyLedger
from trainer.accounting import calibrate_noise_multiplier

from .run_config import SynthConfig


@dataclass
class PlannedStage:
    stage: str
    mechanism: str
    noise_multiplier: float
    sample_rate: float
    steps: int
    epsilon_after: float  # the run's ε once this stage is spent (every earlier stage composed)
    note: str = ""


@dataclass
class Plan:
    n_units: int
    privacy_unit: str
    delta: float
    accountant: str
    target_epsilon: float | None
    stages: list[PlannedStage] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)  # what the grammar / column model enforces
    cannot_produce: list[str] = field(default_factory=list)
    domain_check: str = ""  # the private rows against the declared domains (not DP, for the data owner)
    seconds_per_step: float | None = None
    estimated_seconds: float | None = None
    probe_note: str = ""

    @property
    def epsilon(self) -> float:
        return self.stages[-1].epsilon_after if self.stages else 0.0

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "epsilon": self.epsilon}

    def summary(self) -> str:
        lines = [f"Plan (dry run, nothing trained): N = {self.n_units} {self.privacy_unit}s; "
                 f"δ = {self.delta:.3g} ({self.delta * self.n_units:.3g} × 1/N; keep it below 1/N = "
                 f"{1 / self.n_units:.3g}); accountant {self.accountant}",
                 "",
                 f"  {'stage':<24} {'mechanism':<30} {'σ':>8} {'q':>8} {'steps':>6} {'ε after':>8}"]
        for s in self.stages:
            lines.append(f"  {s.stage:<24} {s.mechanism:<30} {s.noise_multiplier:>8.4g} {s.sample_rate:>8.4g} "
                         f"{s.steps:>6} {s.epsilon_after:>8.3f}" + (f"  ({s.note})" if s.note else ""))
        target = f" of the target {self.target_epsilon:g}" if self.target_epsilon is not None else ""
        lines += ["", f"Total: ε = {self.epsilon:.3f}{target} at δ = {self.delta:.3g}", ""]
        if self.domain_check:
            lines += [f"Private data against the declared domains (not DP): {self.domain_check}", ""]
        lines += ["Generated records are constrained to:"]
        lines += [f"  - {c}" for c in self.constraints]
        if self.cannot_produce:
            lines += ["Values the generator cannot produce:"] + [f"  - {c}" for c in self.cannot_produce]
        if self.estimated_seconds is not None:
            lines += ["", f"Estimated training time: {_duration(self.estimated_seconds)} "
                      f"({self.seconds_per_step:.2f} s per DP-SGD step, timed on one probe step; {self.probe_note})"]
        elif self.probe_note:
            lines += ["", self.probe_note]
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def plan(config: SynthConfig, *, frame=None, probe: bool = False) -> Plan:
    """The plan of a records run (``frame``: the private rows in memory instead of ``data.path``)."""
    from trainer.errors import ConfigError

    if config.kind != "records":
        raise ConfigError(f"--dry-run plans records runs; this is a {config.kind} run")
    from .pipeline import load_private
    from .records.column_road import run_accountant

    private = load_private(config, frame)
    spec = config.spec
    domain_note, private = _check_declared_domains(config, private)
    unit = spec.privacy_unit
    n_units = private[unit].nunique() if unit != "example" else len(private)
    accountant = run_accountant(config) if config.columns.model != "lm" else config.train.accountant
    ledger = PrivacyLedger(delta=config.train.resolve_delta(n_units), accountant=accountant,
                           privacy_unit=config.train.privacy_unit)
    stages: list[PlannedStage] = []

    def add(mechanism: str, note: str = "") -> None:
        e = ledger.events[-1]
        stages.append(PlannedStage(e.stage, mechanism, e.noise_multiplier, e.sample_rate, e.steps,
                                   ledger.epsilon(), note))

    from .run_folder import SELECTION_DELTA_SHARE

    estimated = [c for c in spec.columns if c.estimate]
    n_categorical = sum(c.type == "categorical" for c in estimated)
    for c in estimated:
        kind = {"categorical": "category list", "text": "max_chars"}.get(c.type, "range")
        extra = ledger.delta * SELECTION_DELTA_SHARE / max(1, n_categorical) if c.type == "categorical" else 0.0
        ledger.record(f"domain:{c.name}", noise_multiplier=spec.estimate_noise, sample_rate=1.0, steps=1,
                      extra_delta=extra)
        add("Gaussian" + (" + threshold" if extra else ""), f"DP estimate of the {kind}")
    target = config.train.target_epsilon
    has_text = any(c.type == "text" for c in spec.columns)
    if config.columns.model != "lm":
        from .marginals.column_model import GAUSSIAN_ONLY
        from .records.column_road import column_rho

        if target is None:
            raise ConfigError("the column model needs train.target_epsilon (its ρ is a share of it)")
        share = config.columns.budget_share if has_text else 1.0
        rho = column_rho(ledger, target, share)
        if config.columns.model in GAUSSIAN_ONLY:
            ledger.record("columns", noise_multiplier=1 / math.sqrt(2 * rho), sample_rate=1.0, steps=1)
            add(f"{config.columns.model.upper()} (Gaussian, total)", f"ρ = {rho:.4g}: Gaussian measurements of "
                "a public workload, as one Gaussian")
        else:
            ledger.record_zcdp("columns", rho=rho)
            add(f"{config.columns.model.upper()} (ρ-zCDP, total)", f"ρ = {rho:.4g}: Gaussian measurements + "
                "exponential-mechanism selections")
    elif spec.conditioning and spec.conditioning_weights is None:
        ledger.record("conditioning_histogram", noise_multiplier=config.generate.conditioning_noise,
                      sample_rate=1.0, steps=1)
        add("Gaussian", f"histogram of {spec.conditioning}")
    trains_lm = config.columns.model == "lm" or has_text
    sample_rate = None
    if trains_lm:
        t = config.train
        sample_rate = t.expected_batch_size / n_units
        if t.non_private:
            sigma, note = 0.0, "NON-PRIVATE: no noise"
        elif t.noise_multiplier is not None:
            sigma, note = float(t.noise_multiplier), "σ given"
        else:
            sigma = calibrate_noise_multiplier(target_epsilon=target, delta=ledger.accountant_delta,
                                               sample_rate=sample_rate, steps=t.steps, accountant=accountant,
                                               prior=ledger.history)
            note = "σ calibrated to the target after the stages above"
        if sigma > 0:
            ledger.record("train", noise_multiplier=sigma, sample_rate=sample_rate, steps=t.steps)
            add("subsampled Gaussian (DP-SGD)", f"{note}; C = {t.max_grad_norm}, {t.clipping} clipping")
        else:
            stages.append(PlannedStage("train", "none", 0.0, sample_rate, t.steps, math.inf, note))
    result = Plan(n_units=n_units, privacy_unit=config.train.privacy_unit, delta=ledger.delta, accountant=accountant,
                  target_epsilon=target, stages=stages)
    result.constraints, result.cannot_produce = describe_constraints(config)
    result.domain_check = domain_note
    if trains_lm and probe and sample_rate is not None:
        _probe(config, private, result)
    elif trains_lm:
        result.probe_note = "training time not probed (pass --probe to time one DP-SGD step)"
    else:
        result.probe_note = "no DP-SGD: the column model alone (about a minute for 15 columns × 1,000 rows on 2 CPU cores, README)"
    return result


def _check_declared_domains(config: SynthConfig, private):
    """What the run's domain check will say of the declared (not estimated) columns, and the rows it
    keeps; a check that would stop the run stops the plan with the same message."""
    from .validation import check_domain

    spec = config.spec
    declared = [c for c in spec.columns if not c.estimate]
    if not declared:
        return "", private
    from trainer.errors import ConfigError

    try:
        subset = dataclasses.replace(spec, columns=declared, grammar=None)
    except ConfigError:  # e.g. only conditioning columns are declared: nothing the check could say alone
        return "", private
    kept, report = check_domain(private, subset, policy=config.data.invalid_rows, source=config.data.path)
    return report.summary(), kept


def describe_constraints(config: SynthConfig) -> tuple[list[str], list[str]]:
    """What every generated record obeys (the derived grammar or the column model's domains), and
    what it therefore cannot hold."""
    spec = config.spec
    if spec.grammar:
        return [f"the user grammar {spec.grammar} (every record parses under it)"], []
    enforced, excluded = [], []
    for c in spec.columns:
        null = " or missing" if c.nullable else ""
        if c.estimate:
            what = {"categorical": "one of a category list", "text": "text up to a length",
                    "integer": "a whole number in a range", "float": "a number in a range"}[c.type]
            enforced.append(f"{c.name}: {what}{null}, the domain estimated with DP when the run starts")
            excluded.append(f"{c.name}: values too rare to clear the DP estimate's noise"
                            + (" (they train as \"(other)\")" if c.type == "categorical" else ""))
        elif c.type == "categorical" and c.categories:
            enforced.append(f"{c.name}: one of {len(c.categories)} declared categories{null}")
            excluded.append(f"{c.name}: any value outside the declared list")
        elif c.type in ("integer", "float"):
            lo = "-∞" if c.min is None else f"{c.min:g}"
            hi = "∞" if c.max is None else f"{c.max:g}"
            kind = "whole number" if c.type == "integer" else "number"
            enforced.append(f"{c.name}: a {kind} in [{lo}, {hi}]{null}")
            if c.min is not None or c.max is not None:
                excluded.append(f"{c.name}: numbers outside [{lo}, {hi}]")
        else:
            enforced.append(f"{c.name}: text of at most {c.max_chars} characters{null}")
            excluded.append(f"{c.name}: texts longer than {c.max_chars} characters (private ones are "
                            + ("truncated)" if config.data.invalid_rows == "clip" else
                               f"handled by data.invalid_rows = {config.data.invalid_rows})"))
    if config.columns.model != "lm":
        enforced.append(f"the columns other than text come from the column model ({config.columns.model}): "
                        "numbers drawn uniformly inside their bins")
    return enforced, excluded


def _probe(config: SynthConfig, private, result: Plan) -> None:
    """Time one DP-SGD step on a scratch copy of the model (discarded; its timing is not DP, for the
    data owner's eyes)."""
    from trainer.loop import DPTrainer

    from .records.column_road import split_spec
    from .records.generator import RecordGenerator

    spec = split_spec(config.spec) if config.columns.model != "lm" else config.spec
    generator = RecordGenerator(spec, config.model)
    units = private[spec.privacy_unit].tolist() if spec.privacy_unit != "example" else None
    train = dataclasses.replace(config.train, steps=1, progress=False,
                                noise_multiplier=result.stages[-1].noise_multiplier or 1.0, target_epsilon=None,
                                delta=result.delta, accountant=result.accountant, non_private=False)
    trainer = DPTrainer(generator.model, generator.examples(private), train, units=units,
                        pad_token_id=generator.tokenizer.pad_token_id, output_dir=None)
    try:
        start = time.perf_counter()
        trainer.train(resume=False)
        seconds = time.perf_counter() - start
    finally:
        trainer.close()
    result.seconds_per_step = seconds
    result.estimated_seconds = seconds * config.train.steps
    result.probe_note = "one Poisson batch of the real data: batches vary, and this machine's speed may too"
