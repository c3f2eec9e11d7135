"""Score a synthetic corpus: against held-out real documents (distribution, utility) and against the
private training documents (memorisation), each memorisation figure beside the same figure for the
held-out real documents, which is what text the model never saw looks like.

Metrics: MAUVE (``mauve-text`` on the sentence-encoder embeddings), k-NN precision / recall and
FID on embeddings, length in words (W1), label shares (TV) and TSTR per label (a classifier
trained on synthetic, tested on held-out real, beside trained-on-real and the majority floor),
and memorisation: exact copies, the longest common substring with any private document, the
share of 8-grams found in the private corpus.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from .encoder import Encoder
from .metrics import embedding, memorisation, overlap, utility
from .metrics.attributes import categorical_tv, numeric_w1
from .metrics.base import MetricRecord
from .report import EvaluationReport

MIN_MAUVE = 10  # documents per side below which MAUVE's quantisation means nothing


def mauve_score(real: np.ndarray, synthetic: np.ndarray, *, seed: int) -> MetricRecord:
    if len(real) < MIN_MAUVE or len(synthetic) < MIN_MAUVE:
        return MetricRecord("mauve", None, "higher", len(real), len(synthetic),
                            reason=f"needs at least {MIN_MAUVE} documents on each side")
    import mauve

    out = mauve.compute_mauve(p_features=real.astype(np.float32), q_features=synthetic.astype(np.float32),
                              seed=seed, verbose=False)
    return MetricRecord("mauve", float(out.mauve), "higher", len(real), len(synthetic))


def _words(texts: list[str]) -> list[float]:
    return [float(len(t.split())) for t in texts]


def _strings(frame: pd.DataFrame, column: str) -> list[str | None]:
    return [None if pd.isna(v) else str(v) for v in frame[column].tolist()]


def evaluate_text(private: pd.DataFrame, heldout: pd.DataFrame, synthetic: pd.DataFrame, *, text: str,
                  labels: list[str], encoder: Encoder, seed: int = 0,
                  sources: tuple[str, str, str] = ("private", "held-out", "synthetic")) -> EvaluationReport:
    started = time.perf_counter()
    for name, frame in zip(sources, (private, heldout, synthetic), strict=True):
        missing = [c for c in [text, *labels] if c not in frame.columns]
        if missing:
            from .tables import DataError

            raise DataError(f"{name}: column(s) {missing} are not in the data; it has {list(frame.columns)}")
    docs = {k: [str(t) for t in f[text].dropna()] for k, f in
            (("private", private), ("heldout", heldout), ("synthetic", synthetic))}
    emb = {k: encoder.encode_dataset(v) for k, v in docs.items()}
    metrics: list[MetricRecord] = [mauve_score(emb["heldout"], emb["synthetic"], seed=seed)]
    metrics += embedding.knn_precision_recall(emb["heldout"], emb["synthetic"])
    metrics.append(embedding.frechet_distance(emb["heldout"], emb["synthetic"]))
    lengths = {k: _words(v) for k, v in docs.items()}
    metrics.append(numeric_w1("length_words", lengths["heldout"], lengths["synthetic"]))
    distributions = {"am/length_words": {"kind": "numeric", "real": lengths["heldout"],
                                         "synthetic": lengths["synthetic"], "real_label": "held-out real"}}

    for label in labels:
        real_y, syn_y = _strings(heldout, label), _strings(synthetic, label)
        metrics.append(categorical_tv(label, [y for y in real_y if y is not None],
                                      [y for y in syn_y if y is not None]))
        distributions[f"am/{label}"] = {"kind": "categorical", "real": [y for y in real_y if y], "synthetic":
                                        [y for y in syn_y if y], "real_label": "held-out real"}
        metrics += _tstr(private, heldout, synthetic, text, label, encoder, seed)

    # memorisation: against the private training documents, beside held-out real ones
    metrics.append(memorisation.exact_copies(docs["private"], docs["synthetic"]))
    lcs_syn = overlap.longest_common_substrings(docs["synthetic"], docs["private"])
    lcs_ref = overlap.longest_common_substrings(docs["heldout"], docs["private"])
    metrics += [_mean("memorisation/longest_common_substring_chars", lcs_syn, "lower"),
                _mean("memorisation/heldout_longest_common_substring_chars", lcs_ref, "reference")]
    distributions["memorisation/longest_common_substring_chars"] = {
        "kind": "numeric", "real": lcs_ref.tolist(), "synthetic": lcs_syn.tolist(),
        "real_label": "held-out real vs private"}
    for name, texts, better in (("memorisation/8gram_overlap", docs["synthetic"], "lower"),
                                ("memorisation/heldout_8gram_overlap", docs["heldout"], "reference")):
        share = overlap.ngram_overlap(texts, docs["private"], n=8)
        metrics.append(MetricRecord(name, share, better, len(docs["private"]), len(texts),
                                    reason=None if share is not None else "no document has 8 words"))
    info = {
        "private": {"source": sources[0], "documents": len(docs["private"])},
        "heldout": {"source": sources[1], "documents": len(docs["heldout"])},
        "synthetic": {"source": sources[2], "documents": len(docs["synthetic"])},
        "encoder": encoder.name, "text_column": text, "labels": labels,
        "seconds": round(time.perf_counter() - started, 2),
        "headline": (f"private: {len(docs['private'])} documents ({sources[0]}), held-out: {len(docs['heldout'])} "
                     f"({sources[1]}), synthetic: {len(docs['synthetic'])} ({sources[2]}); encoder: {encoder.name}; "
                     f"{round(time.perf_counter() - started, 1)} s"),
        "not_private": "This report is computed from the private and held-out data without differential "
                       "privacy. Keep it with the private data; do not publish it next to the synthetic data.",
    }
    return EvaluationReport(metrics, distributions, info)


def _tstr(private, heldout, synthetic, text, label, encoder, seed) -> list[MetricRecord]:
    """TSTR / TRTR / majority floor for one label, on document embeddings (the label is not in the text)."""
    def xy(frame):
        keep = frame[text].notna() & frame[label].notna()
        return encoder.encode_dataset([str(t) for t in frame.loc[keep, text]]), [str(y) for y in frame.loc[keep, label]]

    x_tr, y_tr = xy(private)
    x_te, y_te = xy(heldout)
    x_s, y_s = xy(synthetic)
    out = utility.tstr(x_tr, y_tr, x_te, y_te, x_s, y_s, seed=seed)
    for m in out:
        m.name = m.name.replace("utility/", f"utility/{label}/")
    return out


def _mean(name: str, values: np.ndarray, better: str) -> MetricRecord:
    if len(values) == 0:
        return MetricRecord(name, None, better, reason="no documents")
    return MetricRecord(name, float(values.mean()), better, n_synthetic=len(values))
