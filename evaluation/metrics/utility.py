"""Downstream utility: train on synthetic, test on real (TSTR), next to train on real (TRTR).

A logistic regression on record embeddings (label column left out of the text)
predicts the label; both classifiers are tested on the same held-out real rows.
Label fidelity turns the TRTR classifier round: it reads the synthetic rows, and the share
whose label it reads back says how well the synthetic text follows its labels (the TRTR
accuracy is the same figure for held-out real rows).  A TSTR under the majority floor with a
low fidelity means the generator wrote documents that do not carry their labels.
"""

from __future__ import annotations

import numpy as np

from .base import MetricRecord


def _fit(x_train, y_train, seed: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000, random_state=seed).fit(x_train, y_train)


def _score(clf, x_test, y_test) -> tuple[float, float]:
    from sklearn.metrics import accuracy_score, f1_score

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
        real_clf = _fit(x_real_train, y_real_train, seed)
        acc, f1 = _score(real_clf, x_real_test, y_real_test)
        out += [MetricRecord("utility/trtr_accuracy", acc, "higher", len(y_real_train)),
                MetricRecord("utility/trtr_macro_f1", f1, "higher", len(y_real_train))]
        if y_synthetic is not None and len(y_synthetic) and x_synthetic is not None:
            fidelity = float(np.mean(real_clf.predict(x_synthetic) == np.asarray(y_synthetic, dtype=object)))
            out.append(MetricRecord("utility/label_fidelity", fidelity, "higher", len(y_real_train), len(y_synthetic)))
    if missing_reason is None and (y_synthetic is None or len(set(y_synthetic)) < 2):
        missing_reason = "the synthetic data has fewer than 2 label values"
    if missing_reason or n_test == 0:
        reason = missing_reason or "no held-out real rows"
        out += [MetricRecord(f"utility/tstr_{m}", None, "higher", reason=reason) for m in ("accuracy", "macro_f1")]
    else:
        acc, f1 = _score(_fit(x_synthetic, y_synthetic, seed), x_real_test, y_real_test)
        n_s = len(y_synthetic)
        out += [MetricRecord("utility/tstr_accuracy", acc, "higher", n_test, n_s),
                MetricRecord("utility/tstr_macro_f1", f1, "higher", n_test, n_s)]
    return out
