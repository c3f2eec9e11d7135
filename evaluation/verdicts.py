"""Good / fair / poor, for the metrics that have a yardstick in the same report.

A verdict is only given where the report holds its own reference on the same scale, so that it
means "as good as real data could be here", not an absolute threshold:

* SDMetrics quality (overall, column shapes, column pair trends) against the same score of a
  held-out real split vs the rest of the real data: ratio ≥ 0.95 good, ≥ 0.85 fair, else poor;
* TSTR accuracy between the majority-class floor and the real-trained ceiling (TRTR): at or below
  the floor is poor and flagged; share of the floor-to-ceiling gain ≥ 0.75 good, ≥ 0.4 fair;
* mean nearest-neighbour similarity to the real records against held-out real records' (what a
  new real record looks like): at most 0.02 above it good, 0.05 fair, more is poor (the synthetic
  records sit closer to the training records than new real ones do: check for memorisation).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .metrics.base import MetricRecord

QUALITY = ("quality/sdmetrics_overall", "quality/column_shapes", "quality/column_pair_trends")
FLOOR_MARGIN = 0.005  # TSTR within this of the majority floor counts as at the floor


@dataclass
class Verdict:
    metric: str
    verdict: str  # good, fair, poor
    why: str

    def to_dict(self) -> dict:
        return asdict(self)


def _grade(score: float, good: float, fair: float) -> str:
    return "good" if score >= good else "fair" if score >= fair else "poor"


def verdicts(metrics: list[MetricRecord]) -> list[Verdict]:
    values = {m.name: m.value for m in metrics}
    out = []
    for name in QUALITY:
        value, reference = values.get(name), values.get(name.replace("quality/", "quality/real_holdout_"))
        if value is not None and reference:
            ratio = value / reference
            out.append(Verdict(name, _grade(ratio, 0.95, 0.85),
                               f"{value:.3f} is {ratio:.0%} of real vs real ({reference:.3f})"))
    prefixes = sorted({n[: -len("tstr_accuracy")] for n in values if n.endswith("tstr_accuracy")})
    for prefix in prefixes:  # "utility/" or "utility/<label>/"
        tstr, trtr = values.get(f"{prefix}tstr_accuracy"), values.get(f"{prefix}trtr_accuracy")
        floor = values.get(f"{prefix}majority_class_accuracy")
        if tstr is None or floor is None:
            continue
        if tstr <= floor + FLOOR_MARGIN:
            fidelity = values.get(f"{prefix}label_fidelity")
            why = ("" if fidelity is None or trtr is None else
                   f"; a classifier trained on real rows reads back {fidelity:.0%} of the synthetic rows' labels "
                   f"(held-out real rows: {trtr:.0%})" + (": the synthetic text does not carry its labels"
                                                            if fidelity < trtr - 0.05 else ""))
            out.append(Verdict(f"{prefix}tstr_accuracy", "poor",
                               f"AT OR BELOW THE MAJORITY FLOOR ({tstr:.3f} vs always-the-commonest {floor:.3f}): "
                               "a model trained on the synthetic data learned nothing usable" + why))
        elif trtr is not None and trtr > floor:
            gain = (tstr - floor) / (trtr - floor)
            out.append(Verdict(f"{prefix}tstr_accuracy", _grade(gain, 0.75, 0.4),
                               f"recovers {gain:.0%} of real data's gain over the floor ({floor:.3f} -> {trtr:.3f})"))
    near, reference = (values.get("memorisation/nearest_similarity_mean"),
                       values.get("memorisation/real_holdout_nearest_similarity_mean"))
    if near is not None and reference is not None:
        excess = near - reference
        grade = "good" if excess <= 0.02 else "fair" if excess <= 0.05 else "poor"
        out.append(Verdict("memorisation/nearest_similarity_mean", grade,
                           f"{excess:+.3f} against held-out real records' {reference:.3f}"
                           + ("" if grade == "good" else ": synthetic records sit closer to the training records "
                              "than new real records do, check for copies")))
    return out
