"""The report's figures, as base64 PNGs for a self-contained HTML page (matplotlib, Agg backend)."""

from __future__ import annotations

import base64
import io
import textwrap
from collections import Counter
from typing import Any

REAL, SYNTHETIC = "#1f77b4", "#ff7f0e"


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=90)


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _label(text: str, width: int = 18) -> str:
    """A whole label, wrapped (never cut: "Married-civ-spouse" must stay readable)."""
    return "\n".join(textwrap.wrap(str(text), width, break_long_words=True)) or str(text)


def distribution(name: str, dist: dict[str, Any]) -> str:
    """Real vs synthetic: overlaid histograms (numbers) or side-by-side shares of the 15 commonest values."""
    real, syn = dist["real"], dist["synthetic"]
    real_label = dist.get("real_label", "real")
    if dist["kind"] == "numeric":
        fig, ax = _figure(5.2, 2.8)
        values = [v for v in real + syn if v is not None]
        if values:
            lo, hi = min(values), max(values)
            bins = 30 if hi > lo else 1
            span = (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)
            for data, label, color in ((real, real_label, REAL), (syn, "synthetic", SYNTHETIC)):
                if data:
                    ax.hist(data, bins=bins, range=span, density=True, alpha=0.5, label=label, color=color)
    else:
        cr, cs = Counter(real), Counter(syn)
        cats = [c for c, _ in (cr + cs).most_common(15)]
        fig, ax = _figure(max(5.2, 0.45 * len(cats) + 1.5), 3.6)
        xs = range(len(cats))
        ax.bar([x - 0.2 for x in xs], [cr[c] / max(len(real), 1) for c in cats], 0.4, label=real_label, color=REAL)
        ax.bar([x + 0.2 for x in xs], [cs[c] / max(len(syn), 1) for c in cats], 0.4, label="synthetic", color=SYNTHETIC)
        ax.set_xticks(list(xs), [_label("missing" if c is None else c, 14) for c in cats], rotation=60, ha="right",
                      fontsize=7)
        ax.set_ylabel("share", fontsize=8)
    ax.set_title(name, fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return _png(fig)


def column_scores(quality: dict) -> str:
    """Per-column shape score (KS / TV complement): synthetic beside the real-vs-real reference."""
    import numpy as np

    syn = quality["synthetic"]["columns"]
    ref = quality["real_holdout"]["columns"]
    columns = list(syn)
    fig, ax = _figure(7.5, 0.32 * len(columns) + 1.2)
    y = np.arange(len(columns))
    ax.barh(y - 0.2, [syn[c] or 0 for c in columns], 0.4, color=SYNTHETIC, label="synthetic vs real")
    ax.barh(y + 0.2, [ref.get(c) or 0 for c in columns], 0.4, color=REAL, alpha=0.6, label="held-out real vs real")
    ax.set_yticks(y, [f"{c} ({quality['synthetic']['column_metric'].get(c, '')})" for c in columns], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("column shape score (1 = same distribution)", fontsize=8)
    ax.legend(fontsize=7, loc="lower right")
    return _png(fig)


def association_heatmaps(association: dict) -> str:
    """Three matrices on one colour scale: real, synthetic, |synthetic - real|."""
    import numpy as np

    columns = association["columns"]
    real, syn = np.array(association["real"]), np.array(association["synthetic"])
    size = 0.42 * len(columns) + 2.2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(3 * size, size + 0.6), dpi=90)
    for ax, matrix, title in zip(axes, (real, syn, np.abs(syn - real)),
                                 ("real", "synthetic", "|synthetic - real|"), strict=True):
        image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(columns)), columns, rotation=90, fontsize=7)
        ax.set_yticks(range(len(columns)), columns, fontsize=7)
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=axes, shrink=0.7, label=association.get("measure", "association"))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def training_curves(training: dict) -> str:
    """Training loss per step (not DP) and ε spent after each step (from the ledger: DP-safe)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 2.8), dpi=90)
    if training.get("loss"):
        steps, losses = zip(*training["loss"], strict=True)
        left.plot(steps, losses, color=SYNTHETIC)
    left.set_title("training loss (not DP: for the data owner's eyes)", fontsize=9)
    left.set_xlabel("step", fontsize=8)
    if training.get("epsilon"):
        steps, eps = zip(*training["epsilon"], strict=True)
        right.plot(steps, eps, color=REAL)
    right.set_title("ε spent after each step (the whole run's ledger)", fontsize=9)
    right.set_xlabel("step", fontsize=8)
    return _png(fig)
