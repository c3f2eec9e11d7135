"""Score a synthetic data set against the real one: every metric, one report.

CFG-PR counts all synthetic records; every later structural and semantic metric uses
only the records that parse (on both sides) and says how many it used.  Exact-copy
memorisation looks at every synthetic record, parseable or not.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .encoder import Encoder
from .grammar import RecordGrammar
from .metrics import attributes, embedding, knd, memorisation, utility
from .metrics.attributes import mean_of
from .metrics.base import MetricRecord
from .metrics.structure import cfg_pass_rate
from .records import build_records, features_without, numeric_columns
from .report import EvaluationReport
from .spec import EvalSpec


def _split(n: int, labels: list[str] | None, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(n)
    stratify = None
    if labels is not None and None not in labels:  # rows without a label are dropped later, not stratified
        counts = pd.Series(labels).value_counts()
        if len(counts) > 1 and counts.min() >= 2:
            stratify = labels
    train, test = train_test_split(idx, test_size=fraction, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(test)


def _check_columns(real: pd.DataFrame, synthetic: pd.DataFrame, spec: EvalSpec, sources: tuple[str, str]) -> None:
    """Every column the spec names exists in both tables, else a message naming the file and the nearest
    column it has (not a KeyError from deep inside a metric)."""
    from trainer.errors import nearest_key_hint

    from .tables import DataError

    wanted = list(dict.fromkeys([*spec.columns, *(spec.table_columns or [])]))
    for frame, source in ((real, sources[0]), (synthetic, sources[1])):
        have = [str(c) for c in frame.columns]
        for c in wanted:
            if c not in frame.columns:
                raise DataError(f"{source}: no column {c!r} (the evaluation spec names it){nearest_key_hint(c, have)}. "
                                f"The file's columns: {have}")


def _column_distribution(real: pd.Series, synthetic: pd.Series, numeric: bool) -> dict:
    if numeric:
        values = [pd.to_numeric(x, errors="coerce").dropna().astype(float).tolist() for x in (real, synthetic)]
        return {"kind": "numeric", "real": values[0], "synthetic": values[1]}
    return {"kind": "categorical", "real": [None if pd.isna(v) else str(v) for v in real],
            "synthetic": [None if pd.isna(v) else str(v) for v in synthetic]}


def _labels(frame: pd.DataFrame, column: str) -> list[str | None]:
    return [None if pd.isna(v) else str(v) for v in frame[column].tolist()]


def evaluate(real: pd.DataFrame, synthetic: pd.DataFrame, spec: EvalSpec, grammar: RecordGrammar,
             encoder: Encoder, *, card: dict[str, Any] | None = None,
             sources: tuple[str, str] = ("real", "synthetic")) -> EvaluationReport:
    started = time.perf_counter()
    _check_columns(real, synthetic, spec, sources)
    numeric = spec.numeric_columns if spec.numeric_columns is not None else (
        numeric_columns(real, spec.columns) if spec.columns else [])
    real_set = build_records(real, spec, numeric, source=sources[0])
    syn_set = build_records(synthetic, spec, numeric, source=sources[1])
    real_parsed = [grammar.parse(t) for t in real_set.texts]
    syn_parsed = [grammar.parse(t) for t in syn_set.texts]
    real_ok = np.array([p.ok for p in real_parsed], bool)
    syn_ok = np.array([p.ok for p in syn_parsed], bool)
    metrics: list[MetricRecord] = [cfg_pass_rate(syn_parsed)]
    distributions: dict[str, dict[str, list]] = {}

    # KND: node embeddings (each distinct node text encoded once)
    knd_records = []
    for a, b in spec.key_nodes:
        sims_r = knd.similarities(real_parsed, a, b, encoder.encode, spec.max_knd_pairs)
        sims_s = knd.similarities(syn_parsed, a, b, encoder.encode, spec.max_knd_pairs)
        knd_records.append(knd.knd(a, b, sims_r, sims_s))
        distributions[f"knd/{a}~{b}"] = {"kind": "numeric", "real": sims_r.tolist(), "synthetic": sims_s.tolist()}
    if knd_records:
        metrics += knd_records
        metrics.append(mean_of("knd/mean", knd_records))

    # AM
    attrs_kw = dict(length_nodes=spec.length_nodes, count_nodes=spec.count_nodes,
                    numeric_nodes=spec.numeric_nodes, categorical_nodes=spec.categorical_nodes)
    attrs_r = attributes.extract(real_parsed, real_set.contents, **attrs_kw)
    attrs_s = attributes.extract(syn_parsed, syn_set.contents, **attrs_kw)
    if spec.table_columns and set(spec.columns) <= set(spec.table_columns):
        del attrs_r["words"], attrs_s["words"]  # a table without text: a record's word count means nothing
    am_records = attributes.attribute_match(attrs_r, attrs_s)
    metrics += am_records
    if am_records and all(r.name.startswith("am/tv/") for r in am_records):
        metrics.append(mean_of("am/mean", am_records))  # only on one scale: W1s are in each attribute's units
    for name, (kind, values) in attrs_r.items():
        distributions[f"am/{name}"] = {"kind": kind, "real": values, "synthetic": attrs_s[name][1]}

    # record embeddings: KNN-P/R, FID on parseable records
    emb_r_all = encoder.encode_dataset(real_set.contents)
    emb_s_all = encoder.encode_dataset(syn_set.contents)
    emb_r, emb_s = emb_r_all[real_ok], emb_s_all[syn_ok]
    metrics += embedding.knn_precision_recall(emb_r, emb_s, spec.k)
    metrics.append(embedding.frechet_distance(emb_r, emb_s))

    # held-out real split (TSTR test rows; memorisation reference)
    real_labels = _labels(real, spec.label) if spec.label and spec.label in real.columns else None
    train_idx, test_idx = _split(len(real), real_labels, spec.test_fraction, spec.seed)

    # TSTR
    if spec.label:
        metrics += _utility(real, synthetic, syn_ok, spec, encoder, train_idx, test_idx, sources)

    # tabular quality (SDMetrics) of the categorical and numeric columns, their per-column shapes
    # and a pairwise association matrix on one scale (the report's bar chart and heatmaps)
    table = {}
    if spec.table_columns:
        from .metrics.association import association_matrices
        from .metrics.quality import quality_with_details

        records, details = quality_with_details(real, synthetic, spec.table_columns, numeric, train_idx, test_idx)
        metrics += records
        table = {"quality": details}
        if len(spec.table_columns) >= 2:
            table["association"] = association_matrices(real, synthetic, spec.table_columns, numeric)
        for c in spec.table_columns:
            distributions[f"column/{c}"] = _column_distribution(real[c], synthetic[c], c in numeric)

    # memorisation: exact copies over every synthetic record, nearest similarity
    metrics.append(memorisation.exact_copies(real_set.texts, syn_set.texts))
    near_s = memorisation.nearest_similarity(emb_s_all, emb_r_all)
    near_ref = memorisation.nearest_similarity(emb_r_all[test_idx], emb_r_all[train_idx])
    metrics.append(_summary("memorisation/nearest_similarity_mean", near_s, "lower", len(real), len(synthetic)))
    metrics.append(_summary("memorisation/real_holdout_nearest_similarity_mean", near_ref, "reference",
                            len(train_idx), None))
    distributions["memorisation/nearest_similarity"] = {
        "kind": "numeric", "real": near_ref.tolist(), "synthetic": near_s.tolist(),
        "real_label": "held-out real vs rest of real"}

    info = {
        "real": {"source": sources[0], "records": len(real), "parseable": int(real_ok.sum())},
        "synthetic": {"source": sources[1], "records": len(synthetic), "parseable": int(syn_ok.sum())},
        "grammar": {"algorithm": grammar.algorithm},
        "encoder": encoder.name,
        "record_text": "column text" if spec.text_column else f"{spec.serialization} literal of {spec.columns}",
        "numeric_columns": numeric,
        "seconds": round(time.perf_counter() - started, 2),
        "not_private": "This report is computed from the real data without differential privacy. Keep it "
                       "with the private data; do not publish it next to the synthetic data.",
    }
    info.update(table)
    if card is not None:
        privacy = card.get("privacy", {})
        info["privacy"] = {k: privacy.get(k) for k in ("epsilon", "delta", "accountant", "privacy_unit")}
    if real_ok.sum() < len(real):
        info["warning"] = (f"{len(real) - int(real_ok.sum())} of {len(real)} real records do not parse "
                           "under the grammar: check the grammar and the serialisation")
    return EvaluationReport(metrics, distributions, info)


def _utility(real, synthetic, syn_ok, spec: EvalSpec, encoder: Encoder, train_idx, test_idx, sources):
    label = spec.label
    if label not in real.columns:
        return [MetricRecord("utility/tstr_accuracy", None, "higher",
                             reason=f"label column {label!r} is not in {sources[0]}")]
    y_real = _labels(real, label)
    x_real = encoder.encode_dataset(features_without(real, spec, label))
    keep_tr = [i for i in train_idx if y_real[i] is not None]
    keep_te = [i for i in test_idx if y_real[i] is not None]
    x_syn = y_syn = None
    reason = None
    if label not in synthetic.columns:
        reason = f"label column {label!r} is not in {sources[1]}"
    else:
        y_all = _labels(synthetic, label)
        keep_s = [i for i in range(len(synthetic)) if syn_ok[i] and y_all[i] is not None]
        x_syn = encoder.encode_dataset(features_without(synthetic, spec, label))[keep_s]
        y_syn = [y_all[i] for i in keep_s]
    return utility.tstr(x_real[keep_tr], [y_real[i] for i in keep_tr], x_real[keep_te],
                        [y_real[i] for i in keep_te], x_syn, y_syn, seed=spec.seed, missing_reason=reason)


def _summary(name: str, values: np.ndarray, better: str, n_real, n_syn) -> MetricRecord:
    if len(values) == 0:
        return MetricRecord(name, None, better, n_real, n_syn, reason="no records to compare")
    return MetricRecord(name, float(values.mean()), better, n_real, n_syn)


def load_card(synthetic_path: str | Path) -> dict[str, Any] | None:
    """The ``dpsynth.json`` card beside a synthetic data file, if there is one."""
    import json

    path = Path(synthetic_path).parent / "dpsynth.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
