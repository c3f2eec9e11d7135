"""Downstream utility: train on synthetic, test on real (TSTR), next to train on real (TRTR).

A logistic regression on record embeddings (label column left out of the text)
predicts the label; both classifiers are tested on the same held-out real rows.
"""

from __future__ import annotations

import numpy as np

from .base import MetricRecord


def _fit_score(x_train, y_train, x_test, y_test, seed: int) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    clf = LogisticRegression(max_iter=2000, random_state=seed).fit(x_train, y_train)
    pred = clf.predict(x_test)
    return float(accuracy_score(y_test, pred)), float(f1_score(y_test, pred, average="macro", zero_division=0))


def tstr(x_real_train: np.ndarray, y_real_train: list[str], x_real_test: np.ndarray, y_real_test: list[str],
         x_synthetic: np.ndarray | None, y_synthetic: list[str] | None, *, seed: int,
         missing_reason: str | None = None) -> list[MetricRecord]:
    out = []
    n_test = len(y_real_test)
    majority = max(set(y_real_test), key=y_real_test.count) if y_real_test else None
    if majority is not None:
        out.append(MetricRecord("utility/majority_class_accuracy", y_real_test.count(majority) / n_test, "higher",
                                n_real=n_test))
    if len(set(y_real_train)) < 2 or n_test == 0:
        reason = "the real training split has fewer than 2 classes" if n_test else "no held-out real rows"
        out += [MetricRecord(f"utility/trtr_{m}", None, "higher", reason=reason) for m in ("accuracy", "macro_f1")]
    else:
        acc, f1 = _fit_score(x_real_train, y_real_train, x_real_test, y_real_test, seed)
        out += [MetricRecord("utility/trtr_accuracy", acc, "higher", len(y_real_train)),
                MetricRecord("utility/trtr_macro_f1", f1, "higher", len(y_real_train))]
    if missing_reason is None and (y_synthetic is None or len(set(y_synthetic)) < 2):
        missing_reason = "the synthetic data has fewer than 2 label values"
    if missing_reason or n_test == 0:
        reason = missing_reason or "no held-out real rows"
        out += [MetricRecord(f"utility/tstr_{m}", None, "higher", reason=reason) for m in ("accuracy", "macro_f1")]
    else:
        acc, f1 = _fit_score(x_synthetic, y_synthetic, x_real_test, y_real_test, seed)
        n_s = len(y_synthetic)
        out += [MetricRecord("utility/tstr_accuracy", acc, "higher", n_test, n_s),
                MetricRecord("utility/tstr_macro_f1", f1, "higher", n_test, n_s)]
    return out
