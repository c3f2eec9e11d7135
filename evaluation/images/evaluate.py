"""Score synthetic images against held-out real ones (distribution, captions, utility) and against
the private training images (memorisation), with the public SceneFeatures network.

Metrics: fixture-FID and k-NN precision / recall on the network's features; caption consistency
(share of a caption's objects the network finds in the image made from it, beside the same for
real images); downstream utility (an object classifier trained on synthetic images, tested on
held-out real, beside one trained on as many real images, and the floor); nearest-image pixel
distances to the private set, beside the same for held-out images.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..metrics.base import MetricRecord
from ..metrics.embedding import frechet_distance, knn_precision_recall
from ..report import EvaluationReport, image_grid
from ..scene_net import SceneFeatures, fit_scene_net, multi_hot, objects_in_caption, to_tensor


def caption_consistency(features: SceneFeatures, images, captions: list[str], name: str) -> MetricRecord:
    found, named = features.caption_objects_found(images, captions)
    if not named:
        return MetricRecord(name, None, "higher", reason="no caption names an object the network knows")
    return MetricRecord(name, found / named, "higher", n_synthetic=len(captions))


def _micro_f1(pred: np.ndarray, truth: np.ndarray) -> float:
    tp = float((pred & truth).sum())
    denom = float(pred.sum() + truth.sum())
    return 2 * tp / denom if denom else 0.0


def downstream_utility(features: SceneFeatures, synthetic, synthetic_captions, real_train, real_train_captions,
                       real_test, real_test_captions, *, seed: int, steps: int = 400) -> list[MetricRecord]:
    """TSTR / TRTR micro-F1 of object classifiers trained for the same steps on equally many images."""
    objects = features.spec.objects
    y_test = multi_hot([objects_in_caption(c, objects) for c in real_test_captions], objects).numpy() > 0.5
    floor_obj = int(y_test.sum(0).argmax())
    floor = np.zeros_like(y_test)
    floor[:, floor_obj] = True
    out = [MetricRecord("utility/floor_object_f1", _micro_f1(floor, y_test), "reference", n_real=len(y_test))]
    n = min(len(synthetic), len(real_train)) if real_train is not None else len(synthetic)
    x_test = to_tensor(real_test)
    for name, images, captions in (("tstr", synthetic, synthetic_captions), ("trtr", real_train, real_train_captions)):
        if images is None:
            out.append(MetricRecord(f"utility/{name}_object_f1", None, "higher", reason="no real training images given"))
            continue
        x = to_tensor(images)[:n]
        y = multi_hot([objects_in_caption(c, objects) for c in captions[:n]], objects)
        net = fit_scene_net(x, y, epochs=-(-steps * 64 // len(x)), seed=seed)
        with torch.no_grad():
            pred = torch.sigmoid(net(x_test)[1]).numpy() > 0.5
        out.append(MetricRecord(f"utility/{name}_object_f1", _micro_f1(pred, y_test), "higher",
                                n_real=n if name == "trtr" else len(y_test), n_synthetic=n if name == "tstr" else None))
    return out


def _nearest_rms(queries: torch.Tensor, support: torch.Tensor) -> np.ndarray:
    q, s = queries.flatten(1).double(), support.flatten(1).double()
    best = torch.full((len(q),), float("inf"), dtype=torch.float64)
    for i in range(0, len(s), 2048):
        best = torch.minimum(best, torch.cdist(q, s[i:i + 2048], compute_mode="donot_use_mm_for_euclid_dist").min(1).values)
    return (best / q.shape[1] ** 0.5).numpy()


def memorisation(synthetic, private, heldout) -> list[MetricRecord]:
    syn, priv, held = to_tensor(synthetic), to_tensor(private), to_tensor(heldout)
    d_syn, d_held = _nearest_rms(syn, priv), _nearest_rms(held, priv)
    cut = float(np.quantile(d_held, 0.01))
    return [MetricRecord("memorisation/nearest_pixel_distance_mean", float(d_syn.mean()), "higher", len(priv), len(syn)),
            MetricRecord("memorisation/heldout_nearest_pixel_distance_mean", float(d_held.mean()), "reference",
                         len(priv), len(held)),
            MetricRecord("memorisation/near_copy_share", float((d_syn < cut).mean()), "lower", len(priv), len(syn))]


def evaluate_images(synthetic, synthetic_captions: list[str], heldout, heldout_captions: list[str], *,
                    features: SceneFeatures | None = None, private=None, private_captions: list[str] | None = None,
                    seed: int = 0, k: int = 3, utility: bool = True, utility_steps: int = 400) -> EvaluationReport:
    """Images are PIL images or (N, C, H, W) tensors in [-1, 1]; captions: the prompt of each synthetic
    image, the real caption of each held-out / private image."""
    t0 = time.time()
    features = features or SceneFeatures.trained_on_fixture()
    f_syn, f_held = features.features(synthetic), features.features(heldout)
    metrics = [frechet_distance(f_held, f_syn), *knn_precision_recall(f_held, f_syn, k=k),
               caption_consistency(features, synthetic, synthetic_captions, "caption_consistency"),
               caption_consistency(features, heldout, heldout_captions, "caption_consistency_real")]
    if utility:
        metrics += downstream_utility(features, synthetic, synthetic_captions, private, private_captions, heldout,
                                      heldout_captions, seed=seed, steps=utility_steps)
    if private is not None:
        metrics += memorisation(synthetic, private, heldout)
    info = {"headline": f"{len(f_syn)} synthetic images vs {len(f_held)} held-out real"
                        + (f" ({len(private)} private)" if private is not None else "")
                        + f"; features: SceneNet trained on {features.spec.n_train} public fixture renders",
            "feature_net": {"objects": list(features.spec.objects), "n_train": features.spec.n_train,
                            "seed": features.spec.seed},
            "seconds": round(time.time() - t0, 1),
            "not_private": "Memorisation figures compare with the private images: this report is not DP; do not "
                           "publish it." if private is not None else "Scores only: no private images were read."}
    grids = {"held-out real images": image_grid(to_tensor(heldout)), "synthetic images": image_grid(to_tensor(synthetic))}
    return EvaluationReport(metrics, {}, info, grids)
