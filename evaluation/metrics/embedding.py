"""Distribution metrics on record embeddings: KNN precision / recall and the Fréchet distance."""

from __future__ import annotations

import numpy as np
import torch

from .base import MetricRecord


def _distances(a: np.ndarray, b: np.ndarray) -> torch.Tensor:
    # exact differences (no |a|^2 + |b|^2 - 2ab shortcut): identical rows are at distance exactly 0
    return torch.cdist(torch.from_numpy(a).double(), torch.from_numpy(b).double(),
                       compute_mode="donot_use_mm_for_euclid_dist")


def _radii(points: np.ndarray, k: int) -> torch.Tensor:
    """Distance of each point to its k-th nearest neighbour among the others."""
    d = _distances(points, points)
    return d.kthvalue(k + 1, dim=1).values  # the smallest entry is the point itself


def _coverage(queries: np.ndarray, support: np.ndarray, k: int) -> float:
    """Share of queries inside some support point's k-NN ball (Kynkäänniemi et al. 2019)."""
    radii = _radii(support, k)
    inside = (_distances(queries, support) <= radii[None, :]).any(dim=1)
    return float(inside.double().mean())


def knn_precision_recall(real: np.ndarray, synthetic: np.ndarray, k: int = 3) -> list[MetricRecord]:
    """Precision: synthetic records inside the real manifold; recall: real records inside the synthetic one."""
    n_r, n_s = len(real), len(synthetic)
    out = []
    for name, queries, support in (("knn_precision", synthetic, real), ("knn_recall", real, synthetic)):
        if len(support) <= k or len(queries) == 0:
            out.append(MetricRecord(name, None, "higher", n_r, n_s,
                                    reason=f"needs more than k={k} records on each side (real {n_r}, synthetic {n_s})"))
        else:
            out.append(MetricRecord(name, _coverage(queries, support, k), "higher", n_r, n_s))
    return out


def frechet_distance(real: np.ndarray, synthetic: np.ndarray, ridge: float = 1e-6) -> MetricRecord:
    """||mu_r - mu_s||^2 + Tr(S_r + S_s - 2 (S_r S_s)^1/2), ridge * I added to both covariances."""
    if len(real) < 2 or len(synthetic) < 2:
        return MetricRecord("fid", None, "lower", len(real), len(synthetic),
                            reason="needs at least 2 records on each side")
    r, s = real.astype(np.float64), synthetic.astype(np.float64)
    eye = ridge * np.eye(r.shape[1])
    cov_r, cov_s = np.cov(r, rowvar=False) + eye, np.cov(s, rowvar=False) + eye
    # Tr (S_r S_s)^1/2 = sum sqrt(eig(S_r^1/2 S_s S_r^1/2)): a symmetric PSD form, numerically stable
    w, v = np.linalg.eigh(cov_r)
    root_r = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = np.linalg.eigvalsh(root_r @ cov_s @ root_r)
    trace_root = np.sqrt(np.clip(middle, 0, None)).sum()
    diff = r.mean(0) - s.mean(0)
    value = float(diff @ diff + np.trace(cov_r) + np.trace(cov_s) - 2 * trace_root)
    return MetricRecord("fid", max(value, 0.0), "lower", len(real), len(synthetic))
