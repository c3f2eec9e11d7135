"""The evaluation report: JSON for programs, a self-contained HTML page for people, a console table."""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trainer.io import atomic_write_text

from .metrics.base import MetricRecord

# what each metric family measures and which way is better (shown in the HTML and console tables)
MEANINGS = {
    "cfg_pr": "share of synthetic records that parse under the grammar (1 = all)",
    "knd/": "1-Wasserstein distance between real and synthetic distributions of the node pair's cosine similarity (0 = same dependency)",
    "am/w1/": "1-Wasserstein distance between real and synthetic values of the attribute (0 = same distribution)",
    "am/tv/": "total-variation distance between real and synthetic category shares (0 = same, 1 = disjoint)",
    "am/mean": "mean of the attribute distances above",
    "knn_precision": "share of synthetic records inside the real data's k-NN balls (realism)",
    "knn_recall": "share of real records inside the synthetic data's k-NN balls (coverage)",
    "fid": "Fréchet distance between Gaussian fits of real and synthetic record embeddings",
    "utility/majority_class_accuracy": "accuracy of always predicting the most common held-out label (floor)",
    "utility/trtr_": "classifier trained on real, tested on held-out real (ceiling)",
    "utility/tstr_": "classifier trained on synthetic, tested on held-out real",
    "utility/label_fidelity": "share of synthetic rows whose label the classifier trained on real reads back from their text (held-out real: the TRTR accuracy)",
    "memorisation/exact_copy_share": "share of synthetic records identical to a real record",
    "memorisation/nearest_similarity_mean": "mean over synthetic records of the highest cosine similarity to a real record",
    "memorisation/real_holdout_nearest_similarity_mean": "the same for held-out real records vs the other real records: what a new record looks like",
    "mauve": "MAUVE between held-out real and synthetic document embeddings (1 = indistinguishable)",
    "memorisation/longest_common_substring_chars": "mean over synthetic documents of the longest substring (characters) shared with any private document",
    "memorisation/heldout_longest_common_substring_chars": "the same for held-out real documents: what unseen text shares by chance",
    "caption_consistency": "share of the objects a caption names that the public object net finds in the image made from it (1 = all)",
    "caption_consistency_real": "the same for held-out real images and their own captions (what a perfect generator reaches)",
    "utility/tstr_object_f1": "object classifier trained on synthetic images (labels: their captions' objects), tested on held-out real: micro F1",
    "utility/trtr_object_f1": "the same classifier trained on as many real images (ceiling)",
    "utility/floor_object_f1": "micro F1 of always naming the most common object (floor)",
    "memorisation/nearest_pixel_distance_mean": "mean over synthetic images of the RMS pixel distance to the nearest private image",
    "memorisation/heldout_nearest_pixel_distance_mean": "the same for held-out real images: how close an unseen image comes by chance",
    "memorisation/near_copy_share": "share of synthetic images closer to a private image than the 1st percentile of held-out images' distances",
    "memorisation/8gram_overlap": "share of the synthetic documents' word 8-grams found in the private corpus",
    "memorisation/heldout_8gram_overlap": "the same for held-out real documents",
    "summaries/mauve": "MAUVE between held-out real and synthetic album summaries (1 = indistinguishable)",
    "captions/mauve": "MAUVE between held-out real and synthetic photo captions",
    "summaries/topic_tv": "total-variation distance between real and synthetic shares of summary topics (k-means clusters of the real summaries)",
    "albums/caption_intra_inter_ratio": "mean distance between captions of one album / between captions of two albums (1 = a random bag; lower = captions that belong together)",
    "albums/photo_intra_inter_ratio": "the same on the public SceneNet's photo features",
    "albums/caption_intra_inter_ratio_real": "the same for held-out real albums",
    "albums/photo_intra_inter_ratio_real": "the same for held-out real albums' photos",
    "summary_names_theme_and_hero": "share of summaries that name one theme and one hero (emoji album fixture)",
    "caption_hero_consistency": "share of an album's captions that name its summary's hero, averaged over albums",
    "caption_theme_agreement": "share of the non-hero objects an album's captions name that belong to its summary's theme",
    "photo_hero_consistency": "share of an album's photos in which the public SceneNet finds the summary's hero",
    "photo_same_hero": "share of an album's photos holding its most frequent hero (the same hero across the album)",
    "photo_theme_agreement": "share of the non-hero objects found in an album's photos that belong to its summary's theme",
    "memorisation/caption_copy_share": "share of synthetic captions identical to a private caption",
    "memorisation/heldout_caption_copy_share": "the same for held-out real captions (templates repeat by themselves)",
    "memorisation/summary_copy_share": "share of synthetic summaries identical to a private summary",
    "memorisation/heldout_summary_copy_share": "the same for held-out real summaries",
}


def meaning(name: str) -> str:
    parts = name.split("/")
    if parts[0] == "utility" and len(parts) == 3:  # per-label utility: utility/<label>/tstr_accuracy
        name = f"utility/{parts[2]}"
    if name.endswith("_real") and name not in MEANINGS and meaning(name[:-5]):
        return "the same for the held-out real data: " + meaning(name[:-5])
    key = max((k for k in MEANINGS if name.startswith(k)), key=len, default=None)
    return MEANINGS[key] if key else ""


@dataclass
class EvaluationReport:
    metrics: list[MetricRecord]
    distributions: dict[str, dict[str, Any]]
    info: dict[str, Any]
    grids: dict[str, str] = field(default_factory=dict)  # title -> base64 PNG (HTML only: image samples)

    def value(self, name: str) -> float | None:
        return self.metric(name).value

    def metric(self, name: str) -> MetricRecord:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(f"no metric {name!r}; have {[m.name for m in self.metrics]}")

    def to_dict(self) -> dict[str, Any]:
        from .verdicts import verdicts

        return {"info": self.info, "metrics": [asdict(m) for m in self.metrics],
                "verdicts": [v.to_dict() for v in verdicts(self.metrics)], "distributions": self.distributions}

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``report.json`` and ``report.html`` into ``out_dir`` (each atomically)."""
        out = Path(out_dir)
        paths = {"json": out / "report.json", "html": out / "report.html"}
        atomic_write_text(paths["json"], json.dumps(self.to_dict(), indent=1, default=_json_default) + "\n")
        atomic_write_text(paths["html"], render_html(self))
        return paths

    def summary(self) -> str:
        rows = [("metric", "value", "better", "n real / synthetic")]
        for m in self.metrics:
            value = "null" if m.value is None else f"{m.value:.4f}"
            if m.value is None:
                value += f" ({m.reason})"
            counts = "" if m.n_real is None and m.n_synthetic is None else f"{_n(m.n_real)} / {_n(m.n_synthetic)}"
            rows.append((m.name, value, m.better, counts))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        head = [self.info.get("headline") or (
                f"real: {self.info['real']['records']} records ({self.info['real']['parseable']} parse), "
                f"synthetic: {self.info['synthetic']['records']} ({self.info['synthetic']['parseable']} parse); "
                f"grammar: {self.info['grammar']['algorithm']}; encoder: {self.info['encoder']}; "
                f"{self.info['seconds']} s")]
        if "privacy" in self.info:
            p = self.info["privacy"]
            head.append(f"synthetic data card: (ε = {_short(p['epsilon'])}, δ = {_short(p['delta'])})-DP, "
                        f"unit: {p['privacy_unit']}")
        if "warning" in self.info:
            head.append(f"warning: {self.info['warning']}")
        return "\n".join(head + [""] + lines)


def _n(x) -> str:
    return "-" if x is None else str(x)


def _json_default(x):
    return x.item() if hasattr(x, "item") else str(x)


def image_grid(images, columns: int = 8, scale: int = 2) -> str:
    """A base64 PNG of the first ``columns``² images ((N, C, H, W) in [-1, 1]), nearest-neighbour enlarged."""
    import numpy as np
    from PIL import Image

    x = images[: columns * columns]
    arr = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    n, h, w, c = arr.shape
    rows = -(-n // columns)
    sheet = np.full((rows * h, columns * w, c), 255, np.uint8)
    for i in range(n):
        sheet[(i // columns) * h:(i // columns + 1) * h, (i % columns) * w:(i % columns + 1) * w] = arr[i]
    im = Image.fromarray(sheet.squeeze(-1) if c == 1 else sheet).resize((columns * w * scale, rows * h * scale),
                                                                        Image.Resampling.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _verdict_badge(v) -> str:
    colour = {"good": "#1a7f37", "fair": "#9a6700", "poor": "#cf222e"}[v.verdict]
    return f'<span class=badge style="background:{colour}">{v.verdict}</span>'


def _headline(report: EvaluationReport, verdict_by_name: dict) -> str:
    """The one overall score, its parts, its real-vs-real reference and verdict (tables only)."""
    e = html.escape
    values = {m.name: m.value for m in report.metrics}
    overall = values.get("quality/sdmetrics_overall")
    if overall is None:
        return ""
    parts = " · ".join(f"{label} <b>{values[n]:.1%}</b>" for n, label in (
        ("quality/column_shapes", "column shapes"), ("quality/column_pair_trends", "column pair trends"))
        if values.get(n) is not None)
    reference = values.get("quality/real_holdout_sdmetrics_overall")
    ref = (f"<div>real vs real (a held-out split of the real rows against the rest): <b>{reference:.1%}</b>, "
           "what a perfect generator could reach with this much data</div>") if reference is not None else ""
    v = verdict_by_name.get("quality/sdmetrics_overall")
    badge = f" {_verdict_badge(v)} <span class=why>{e(v.why)}</span>" if v else ""
    return (f'<div class=headline><div class=score>Quality score <b>{overall:.1%}</b>{badge}</div>'
            f"<div>{parts} (SDMetrics QualityReport: the mean of the two)</div>{ref}</div>")


def render_html(report: EvaluationReport) -> str:
    from . import report_plots
    from .verdicts import verdicts

    e = html.escape
    info = report.info
    found = verdicts(report.metrics)
    verdict_by_name = {v.metric: v for v in found}
    rows = []
    for m in report.metrics:
        value = f"{m.value:.4f}" if m.value is not None else f"<i>null: {e(m.reason or '')}</i>"
        v = verdict_by_name.get(m.name)
        verdict = f"{_verdict_badge(v)} {e(v.why)}" if v else ""
        rows.append(f"<tr><td>{e(m.name)}</td><td>{value}</td><td>{e(m.better)}</td><td>{verdict}</td>"
                    f"<td>{_n(m.n_real)} / {_n(m.n_synthetic)}</td><td>{e(meaning(m.name))}</td></tr>")
    flags = "".join(f"<p class=warn>{e(v.metric)}: {e(v.why)}</p>" for v in found
                    if v.metric.endswith("tstr_accuracy") and "FLOOR" in v.why)
    plots = "".join(
        f'<figure><img alt="{e(name)}" src="data:image/png;base64,{report_plots.distribution(name, dist)}"></figure>'
        for name, dist in report.distributions.items())
    if "headline" in info:
        intro = e(info["headline"])
    else:
        intro = (f"Real: {e(str(info['real']['source']))}: {info['real']['records']} records, "
                 f"{info['real']['parseable']} parse. Synthetic: {e(str(info['synthetic']['source']))}: "
                 f"{info['synthetic']['records']} records, {info['synthetic']['parseable']} parse. Grammar parser: "
                 f"{e(info['grammar']['algorithm'])}. Encoder: {e(info['encoder'])}. Records embedded as: "
                 f"{e(info['record_text'])}. Took {info['seconds']} s.")
    privacy = ""
    if "privacy" in info:
        p = info["privacy"]
        privacy = (f"<p>The synthetic data's card states <b>(ε = {e(_short(p['epsilon']))}, δ = {e(_short(p['delta']))})"
                   f"-DP</b> (unit: {e(str(p['privacy_unit']))}, accountant: {e(str(p['accountant']))}).</p>")
    warning = f"<p class=warn>{e(info['warning'])}</p>" if "warning" in info else ""
    table = ""
    if info.get("quality"):
        table += ("<h2>Column shapes</h2><p>Per column: SDMetrics' KS complement (numbers) or TV complement "
                  "(categories), 1 = the same distribution as the real data; beside it the held-out real rows "
                  f'scored the same way.</p><img alt="column shape scores" '
                  f'src="data:image/png;base64,{report_plots.column_scores(info["quality"])}">')
    if info.get("association"):
        table += ("<h2>Column pair associations</h2><p>Every pair of columns, real beside synthetic, on one "
                  f"scale: {e(info['association']['measure'])}; 0 = independent, 1 = one determines the other. "
                  "The third matrix is what the synthetic data gets wrong.</p>"
                  f'<img alt="association heatmaps" style="max-width:100%" '
                  f'src="data:image/png;base64,{report_plots.association_heatmaps(info["association"])}">')
    if info.get("training"):
        table += ("<h2>Training</h2>"
                  f'<img alt="training curves" src="data:image/png;base64,{report_plots.training_curves(info["training"])}">')
    grids = "".join(f'<figure><img alt="{e(t)}" style="image-rendering:pixelated" src="data:image/png;base64,{png}">'
                    f"<figcaption>{e(t)}</figcaption></figure>" for t, png in report.grids.items())
    if grids:
        grids = f"<h2>Samples</h2>{grids}"
    examples = "".join(f"<h3>{e(title)}</h3><ol>" + "".join(f"<li>{e(t)}</li>" for t in texts) + "</ol>"
                       for title, texts in info.get("examples", {}).items())
    if examples:
        grids += f"<h2>Examples</h2>{examples}"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>dpsynth evaluation</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}}figure{{display:inline-block;margin:4px}}
.warn{{color:#a00;font-weight:bold}}.note{{background:#fff6d5;padding:6px}}
.headline{{border:1px solid #ccc;border-radius:6px;padding:10px 14px;margin:1em 0;background:#f6f8fa}}
.score{{font-size:26px}}.badge{{color:white;border-radius:4px;padding:1px 7px;font-size:13px}}
.why{{font-size:13px;color:#555}}</style></head><body>
<h1>Synthetic data evaluation</h1>
<p>{intro}</p>
{privacy}{warning}<p class=note>{e(info['not_private'])}</p>
{_headline(report, verdict_by_name)}{flags}
{table}
<h2>Metrics</h2>
<p>Verdicts only where the report holds a yardstick on the same scale (a real-vs-real reference, the
majority floor and the real-trained ceiling): good / fair / poor, rules in <code>evaluation/verdicts.py</code>.</p>
<table><tr><th>metric</th><th>value</th><th>better</th><th>verdict</th><th>n real / synthetic</th><th>what it measures</th></tr>
{''.join(rows)}</table>
{grids}<h2>Distributions</h2>{plots}
</body></html>
"""


def _short(x) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)
