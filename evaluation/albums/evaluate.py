"""Score synthetic albums against held-out real albums: the text (summaries and captions), how an
album holds together, and, when both sides have photos, the images.

An album is a dict with ``summary``, ``captions`` (one per photo) and optionally ``images`` (one per
caption: a (n, C, H, W) tensor in [-1, 1], or a list of (C, H, W) tensors or PIL images).

Metrics (each album counts once, whatever its length):

* ``summaries/mauve``, ``captions/mauve``: MAUVE on the sentence-encoder embeddings;
* ``summaries/topic_tv``: the held-out summaries are clustered (k-means on their embeddings) and
  every summary assigned to its nearest centre: the total-variation distance between the real and
  synthetic topic shares;
* ``knd/summary~caption`` and ``knd/caption~caption``: the Struct-Bench key-node dependency (W1
  between real and synthetic distributions of the cosine similarity of a summary and each of its
  captions, of consecutive captions);
* ``albums/caption_intra_inter_ratio``: mean cosine distance between two captions of one album over
  that between captions of different albums (1: an album is a random bag of captions; lower: its
  captions belong together), beside the held-out albums' ratio; the same on the public SceneNet's
  photo features (``albums/photo_intra_inter_ratio``);
* album coherence on the emoji album fixture's vocabulary (``evaluation.albums.coherence``: hero
  consistency, theme agreement), each beside the held-out albums' value (``..._real``);
* with photos: fixture-FID, k-NN precision / recall and caption-photo consistency (the images
  evaluator's), and the photos' pixel distance to the private photos beside held-out ones.

Memorisation of text: the share of synthetic captions and summaries that are word-for-word a
private one, beside the same share for held-out albums (template captions repeat by themselves).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..encoder import Encoder
from ..images.evaluate import caption_consistency, memorisation
from ..metrics import embedding
from ..metrics.attributes import categorical_tv
from ..metrics.base import MetricRecord
from ..metrics.knd import knd
from ..report import EvaluationReport, image_grid
from ..scene_net import FeatureNetSpec, SceneFeatures, to_tensor
from ..text import mauve_score
from .coherence import album_coherence

GRID_ALBUMS = 6  # albums shown per side in the HTML report


def album_feature_net(n_train: int = 6000) -> FeatureNetSpec:
    """The public SceneNet for album photos: the album fixture's objects and palettes, 8 epochs (at the
    scenes' default 5 it finds the hero in 17% of real album photos, at 8 in 65%)."""
    from ..fixtures.albums import EmojiAlbums

    return FeatureNetSpec(objects=EmojiAlbums().objects, backgrounds="albums", n_train=n_train, epochs=8)


def _captions(albums: list[dict]) -> tuple[list[str], np.ndarray]:
    texts, owner = [], []
    for i, a in enumerate(albums):
        texts += list(a["captions"])
        owner += [i] * len(a["captions"])
    return texts, np.asarray(owner, dtype=np.int64)


def intra_inter_ratio(vectors: np.ndarray, owner: np.ndarray, name: str, better: str) -> MetricRecord:
    # ``better = "reference"``: the held-out real albums' ratio, counted as real
    """Mean distance of two items of one album / mean distance of items of two albums (cosine
    distance of unit rows).  Per-album means first, so long albums do not dominate."""
    if len(vectors) == 0:
        return MetricRecord(name, None, better, reason="no items")
    x = torch.as_tensor(vectors, dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    dist = (1 - x @ x.T).numpy()
    same = owner[:, None] == owner[None, :]
    intra, inter = [], []
    for a in np.unique(owner):
        rows = owner == a
        block = dist[np.ix_(rows, rows)]
        k = int(rows.sum())
        if k >= 2:
            intra.append((block.sum() - np.trace(block)) / (k * (k - 1)))
        others = dist[rows][:, ~same[rows][0]]
        if others.size:
            inter.append(others.mean())
    if not intra or not inter:
        return MetricRecord(name, None, better, reason="needs albums with two or more items, and two albums")
    n = len(np.unique(owner))
    return MetricRecord(name, float(np.mean(intra) / np.mean(inter)), better,
                        n_real=n if better == "reference" else None, n_synthetic=None if better == "reference" else n)


def _pairs(albums: list[dict], embed, *, summary: bool) -> np.ndarray:
    """Cosine similarity of (summary, caption_i) pairs, or of (caption_i, caption_i+1)."""
    left, right = [], []
    for a in albums:
        caps = list(a["captions"])
        if summary:
            left += [a["summary"]] * len(caps)
            right += caps
        else:
            left += caps[:-1]
            right += caps[1:]
    if not left:
        return np.zeros(0)
    return np.sum(embed(left) * embed(right), axis=1).astype(np.float64)


def topic_tv(real: np.ndarray, synthetic: np.ndarray, *, topics: int, seed: int) -> MetricRecord:
    from sklearn.cluster import KMeans

    k = min(topics, len(np.unique(real.round(6), axis=0)))
    if k < 2 or len(synthetic) == 0:
        return MetricRecord("summaries/topic_tv", None, "lower", len(real), len(synthetic),
                            reason="needs two distinct real summaries and a synthetic one")
    km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(real)
    return _renamed(categorical_tv("topic", [str(t) for t in km.labels_],
                                            [str(t) for t in km.predict(synthetic)]), "summaries/topic_tv")


def _renamed(m: MetricRecord, name: str) -> MetricRecord:
    m.name = name
    return m


def _copy_share(name: str, texts: list[str], private: set[str], better: str) -> MetricRecord:
    if not texts:
        return MetricRecord(name, None, better, reason="no texts")
    return MetricRecord(name, sum(t in private for t in texts) / len(texts), better, len(private), len(texts))


def _with_images(albums: list[dict]) -> bool:
    return bool(albums) and all(a.get("images") is not None and len(a["images"]) == len(a["captions"]) for a in albums)


def _photos(albums: list[dict]) -> torch.Tensor:
    return torch.cat([to_tensor(a["images"]) for a in albums])


def _album_grid(a: dict) -> str:
    return image_grid(to_tensor(a["images"]), columns=max(1, len(a["images"])), scale=2)


def evaluate_albums(synthetic: list[dict], heldout: list[dict], *, encoder: Encoder,
                    features: SceneFeatures | None = None, private: list[dict] | None = None, seed: int = 0,
                    topics: int = 8, sources: tuple[str, str, str] = ("private", "held-out", "synthetic"),
                    ) -> EvaluationReport:
    started = time.perf_counter()
    embed = encoder.encode_dataset
    metrics: list[MetricRecord] = []
    summaries = {k: [a["summary"] for a in v] for k, v in (("heldout", heldout), ("synthetic", synthetic))}
    s_emb = {k: embed(v) for k, v in summaries.items()}
    metrics.append(_renamed(mauve_score(s_emb["heldout"], s_emb["synthetic"], seed=seed), "summaries/mauve"))
    metrics.append(topic_tv(s_emb["heldout"], s_emb["synthetic"], topics=topics, seed=seed))
    caps = {k: _captions(v) for k, v in (("heldout", heldout), ("synthetic", synthetic))}
    c_emb = {k: embed(texts) for k, (texts, _) in caps.items()}
    metrics.append(_renamed(mauve_score(c_emb["heldout"], c_emb["synthetic"], seed=seed), "captions/mauve"))
    for label, summary in (("summary~caption", True), ("caption~caption", False)):
        a, b = label.split("~")
        metrics.append(knd(a, b, _pairs(heldout, embed, summary=summary), _pairs(synthetic, embed, summary=summary)))
    metrics.append(intra_inter_ratio(c_emb["synthetic"], caps["synthetic"][1], "albums/caption_intra_inter_ratio",
                                     "lower"))
    metrics.append(intra_inter_ratio(c_emb["heldout"], caps["heldout"][1], "albums/caption_intra_inter_ratio_real",
                                     "reference"))

    images = features is not None and _with_images(synthetic) and _with_images(heldout)
    coherence_features = features if images else None
    real_coherence = {m.name: m for m in album_coherence(heldout, features=coherence_features)}
    for m in album_coherence(synthetic, features=coherence_features):
        metrics.append(m)
        ref = real_coherence[m.name]
        metrics.append(MetricRecord(f"{m.name}_real", ref.value, "reference", n_real=ref.n_synthetic,
                                    reason=ref.reason))

    grids: dict[str, str] = {}
    if images:
        syn_imgs, held_imgs = _photos(synthetic), _photos(heldout)
        f_syn, f_held = features.features(syn_imgs), features.features(held_imgs)
        metrics += [embedding.frechet_distance(f_held, f_syn), *embedding.knn_precision_recall(f_held, f_syn),
                    caption_consistency(features, syn_imgs, caps["synthetic"][0], "caption_consistency"),
                    caption_consistency(features, held_imgs, caps["heldout"][0], "caption_consistency_real"),
                    intra_inter_ratio(f_syn, caps["synthetic"][1], "albums/photo_intra_inter_ratio", "lower"),
                    intra_inter_ratio(f_held, caps["heldout"][1], "albums/photo_intra_inter_ratio_real", "reference")]
        if private is not None and _with_images(private):
            metrics += memorisation(syn_imgs, _photos(private), held_imgs)
        for side, albums in (("real", heldout), ("synthetic", synthetic)):
            for i, a in enumerate(albums[:GRID_ALBUMS]):
                grids[f"{side} album {i + 1}: {a['summary']}"] = _album_grid(a)
    if private is not None:
        p_caps = set(_captions(private)[0])
        p_sums = {a["summary"] for a in private}
        metrics += [_copy_share("memorisation/caption_copy_share", caps["synthetic"][0], p_caps, "lower"),
                    _copy_share("memorisation/heldout_caption_copy_share", caps["heldout"][0], p_caps, "reference"),
                    _copy_share("memorisation/summary_copy_share", summaries["synthetic"], p_sums, "lower"),
                    _copy_share("memorisation/heldout_summary_copy_share", summaries["heldout"], p_sums, "reference")]
    examples = {f"{side} albums": [f"{a['summary']}: " + " | ".join(a["captions"]) for a in albums[:GRID_ALBUMS]]
                for side, albums in (("held-out real", heldout), ("synthetic", synthetic))}
    seconds = round(time.perf_counter() - started, 1)
    n_photos = {k: len(t) for k, (t, _) in caps.items()}
    info = {
        "headline": (f"synthetic: {len(synthetic)} albums, {n_photos['synthetic']} captions ({sources[2]}); held-out "
                     f"real: {len(heldout)} albums, {n_photos['heldout']} captions ({sources[1]})"
                     + (f"; private: {len(private)} albums ({sources[0]})" if private is not None else "")
                     + f"; encoder: {encoder.name}" + ("; photos scored with the public SceneNet" if images else
                                                       "; photos not scored") + f"; {seconds} s"),
        "encoder": encoder.name, "seconds": seconds, "examples": examples,
        "not_private": ("Memorisation figures compare with the private albums: this report is not DP; do not "
                        "publish it." if private is not None else "Scores against held-out albums only."),
    }
    return EvaluationReport(metrics, {}, info, grids)
