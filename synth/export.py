"""Write the synthetic table with its card: README.md (for people) and dpsynth.json (for programs).

The export folder is what a user shares.  It holds only synthetic rows and
statements about how they were made; anything computed from the private data
without DP (e.g. how many synthetic rows equal a training row) goes to the run
folder's report instead, never here.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd

from trainer.errors import ConfigError
from trainer.io import atomic_directory

FORMATS = ("csv", "jsonl", "parquet", "hf")  # hf: a Hugging Face `datasets` folder (save_to_disk)
HF_FOLDER = "dataset"


def data_file_name(fmt: str) -> str:
    return f"{HF_FOLDER}/" if fmt == "hf" else f"synthetic.{fmt}"


def software_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("dpsynth")
    except PackageNotFoundError:
        v = "unknown"
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{v}+{sha}" if sha else v


def write_table(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    if fmt == "csv":
        # "\r\n" line ends make the csv writer quote every field holding a CR or LF: with "\n" alone a
        # bare CR went unquoted and split one record into two when read back
        frame.to_csv(path, index=False, lineterminator="\r\n")
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    elif fmt == "parquet":
        frame.to_parquet(path, index=False)
    elif fmt == "hf":
        from datasets import Dataset

        Dataset.from_pandas(frame, preserve_index=False).save_to_disk(str(path))
    else:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")


def export(frame: pd.DataFrame, out_dir: str | Path, *, fmt: str, card: dict[str, Any], overwrite: bool = False) -> Path:
    """Atomically write ``synthetic.<fmt>``, ``dpsynth.json`` and ``README.md`` into ``out_dir``."""
    out_dir = Path(out_dir)
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if out_dir.exists() and not overwrite:
        raise ConfigError(f"output folder {out_dir} exists; pass --overwrite to replace it")
    card = {**card, "rows": len(frame), "data_file": data_file_name(fmt), "software_version": software_version()}
    with atomic_directory(out_dir) as tmp:
        write_table(frame, tmp / data_file_name(fmt).rstrip("/"), fmt)
        (tmp / "dpsynth.json").write_text(json.dumps(card, indent=2, sort_keys=True, default=str))
        readme = render_card(card)
        if fmt == "hf":
            readme = hub_card_header(card) + readme + hub_push_note(out_dir)
        (tmp / "README.md").write_text(readme)
    return out_dir


def hub_card_header(card: dict[str, Any]) -> str:
    """The YAML block a Hugging Face dataset card starts with, its ``dp`` block the card's guarantee."""
    import yaml

    p = card["privacy"]
    rows = card["rows"]
    size = ("n<1K" if rows < 1_000 else "1K<n<10K" if rows < 10_000 else "10K<n<100K" if rows < 100_000
            else "100K<n<1M" if rows < 1_000_000 else "n>1M")
    meta = {"tags": ["synthetic", "differential-privacy", "dpsynth"], "size_categories": [size],
            "dp": {"epsilon": None if not math.isfinite(p["epsilon"]) else float(p["epsilon"]),
                   "delta": float(p["delta"]), "privacy_unit": p["privacy_unit"], "accountant": p["accountant"],
                   "stages": [e["stage"] for e in p["stages"]], "caveats": list(p.get("caveats", [])),
                   "generator": "dpsynth " + str(card["software_version"])}}
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n\n"


def hub_push_note(out_dir: Path) -> str:
    """How to publish the folder (never run by dpsynth: publishing is the user's decision)."""
    return ("\n## Publishing on the Hugging Face Hub (dpsynth never does this for you)\n\n```bash\n"
            f"python -c \"from datasets import load_from_disk; load_from_disk('{out_dir}/{HF_FOLDER}')"
            ".push_to_hub('YOUR_NAME/YOUR_DATASET')\"\n"
            f"huggingface-cli upload YOUR_NAME/YOUR_DATASET {out_dir}/README.md README.md --repo-type dataset\n```\n")


def export_imagefolder(frame: pd.DataFrame, out_dir: str | Path, *, card: dict[str, Any], overwrite: bool = False
                       ) -> Path:
    """Atomically write an imagefolder (Hugging Face layout): ``images/NNNNNN.png`` from the frame's
    ``png`` bytes, ``metadata.jsonl`` (``file_name`` and the frame's other columns), the card."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise ConfigError(f"output folder {out_dir} exists; pass --overwrite to replace it")
    card = {**card, "rows": len(frame), "data_file": "metadata.jsonl + images/", "software_version": software_version()}
    fields = [c for c in frame.columns if c != "png"]
    with atomic_directory(out_dir) as tmp:
        (tmp / "images").mkdir()
        lines = []
        for i, row in enumerate(frame.itertuples(index=False)):
            name = f"images/{i:06d}.png"
            (tmp / name).write_bytes(row.png)
            lines.append(json.dumps({"file_name": name, **{f: getattr(row, f) for f in fields}}, ensure_ascii=False))
        (tmp / "metadata.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (tmp / "dpsynth.json").write_text(json.dumps(card, indent=2, sort_keys=True, default=str))
        (tmp / "README.md").write_text(render_card(card))
    return out_dir


# ledger details that feed the card's other sections (the shares of rows a DP domain cannot reproduce)
CARD_HIDDEN_DETAILS = ("inside_count", "nullable")


def _fmt(x) -> str:
    return "∞" if isinstance(x, float) and math.isinf(x) else (f"{x:.4g}" if isinstance(x, float) else str(x))


def render_card(card: dict[str, Any]) -> str:
    from trainer.accounting.ledger import CAVEATS

    p = card["privacy"]
    private = math.isfinite(p["epsilon"]) and "non_private" not in p.get("caveats", [])
    lines = [
        "# Synthetic data set (differentially private)" if private else
        "# Synthetic data set: NOT DIFFERENTIALLY PRIVATE",
        "",
    ]
    if not private:
        lines += ["> **WARNING: these records carry NO differential-privacy guarantee** (ε = ∞: a stage ran without "
                  "noise). They may reproduce private training records. Do not share them as private data.", ""]
    for caveat in p.get("caveats", []):
        if caveat != "non_private":
            lines += [f"> **WARNING:** {CAVEATS[caveat]}.", ""]
    lines += [
        f"`{card['data_file']}`: {card['rows']} synthetic {card.get('items', 'records')} generated by dpsynth "
        f"{card['software_version']}.",
        "",
        "## Privacy guarantee",
        "",
        f"The whole pipeline satisfies **({_fmt(p['epsilon'])}, {p['delta']:.3g})-differential privacy** "
        f"with respect to one **{p['privacy_unit']}** of the private data"
        + (f" (a {p['privacy_unit']} contributes at most {p['max_examples_per_user']} "
           f"{'chunks' if p['privacy_unit'] == 'document' else card.get('items', 'rows')} per step, all clipped together)"
           if p.get("max_examples_per_user") else "")
        + f", composed over every stage that read private data (accountant: {p['accountant']}).",
        "",
        "| stage | mechanism | noise multiplier σ | sampling rate q | steps | ε after this stage | details |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for e in p["stages"]:
        details = ", ".join(f"{k}={v}" for k, v in sorted(e["details"].items())
                            if v is not None and k not in CARD_HIDDEN_DETAILS)
        mechanism = ("ρ-zCDP (exponential mechanism)" if e.get("mechanism") == "zcdp" else
                     "subsampled Gaussian" if e["sample_rate"] < 1 else "Gaussian")
        if e.get("extra_delta"):
            mechanism += f" + threshold (extra δ {e['extra_delta']:.3g})"
        after = _fmt(e["epsilon_after"]) if e.get("epsilon_after") is not None else ""
        lines.append(f"| {e['stage']} | {mechanism} | {_fmt(e['noise_multiplier'])} | {_fmt(e['sample_rate'])} | "
                     f"{e['steps']} | {after} | {details} |")
    if any(e.get("mechanism") == "zcdp" for e in p["stages"]):
        lines += ["", "The ρ-zCDP stages (the column model's selections: exponential mechanism, ρ = ε²/8) have the "
                  "Rényi-DP curve α·ρ, the Gaussian stages their exact RDP curves; the RDP accountant adds the curves "
                  "of every stage and converts the sum to (ε, δ) once (Bun & Steinke 2016; Mironov 2017), so the "
                  "guarantee above covers the column model and the LM together. The column model's rounds adapt their "
                  "noise to its earlier outputs inside a total ρ fixed before it starts (a zCDP privacy filter, as in "
                  "AIM's own proof). σ shown for a zCDP stage is the Gaussian's with the same RDP curve, 1/√(2ρ)."]
    if p.get("extra_delta"):
        lines += ["", f"Of δ, {p['extra_delta']:.3g} is the chance that a DP category list names a value only one "
                  f"row holds (partition selection); ε is the accountant's at the remaining δ = "
                  f"{p['accountant_delta']:.3g}."]
    lines += _what_it_means(p, card.get("items", "records"))
    lines += ["", "## Declared public (not paid for: stated by the user, not read from the data)", ""]
    lines += [f"- {f}" for f in card.get("declared_public", [])] or ["- nothing"]
    if card.get("estimated_with_dp"):
        lines += ["", "## Estimated from the private data with DP (paid for: in the stages above)", ""]
        lines += [f"- {f}" for f in card["estimated_with_dp"]]
    left_out = card.get("spec", {}).get("columns_not_synthesised")
    if left_out:
        lines += ["", "## Columns of the data file not synthesised", "",
                  f"The data file also has {', '.join(f'`{c}`' for c in left_out)} (names from its header); the spec "
                  "leaves them out, so this export has no such columns."]
    checks = card.get("data_checks", {})
    policy = checks.get("invalid_rows")
    if policy:
        action = {"error": "would have stopped the run (there were none)", "drop": "were left out of training",
                  "clip": "were truncated / clamped into the domain (or left out when that was impossible)"}[policy]
        lines += ["", f"Private rows outside the spec's declared domain {action} (data.invalid_rows = {policy}); "
                  "how many is not DP and stays in the run folder."]
        if checks.get("estimated_columns"):
            other = checks.get("other_category")
            fate = (f"a category below the list's release threshold became `{other}`, a value every DP category "
                    f"list holds, so `{other}` in this data stands for values too rare to release" if other else
                    "a row holding a category not in the list was left out of training")
            lines += ["", "Private rows outside a domain estimated with DP (columns "
                      f"{', '.join(f'`{c}`' for c in checks['estimated_columns'])}) were clamped or truncated into it "
                      f"whatever data.invalid_rows says; {fate}. How many is not DP and stays in the run folder."]
    gen = card["generation"]
    lines += [
        "",
        "## How it was made",
        "",
        f"- model: {card['model']}",
        *([f"- requested / emitted: {gen['requested']} / {gen['emitted']}: {gen['summary']}; seed: {card.get('seed')}"]
          if "summary" in gen else [
            f"- requested / emitted: {gen['requested']} / {gen['emitted']} ("
            + ("drawn again after " if "redrawn" in gen else "dropped for ")
            + f"not closing within the token budget: {gen['hit_limit']}; rejected by the spec after decoding: "
            f"{gen.get('rejected_by_spec', 0)})",
            f"- {gen.get('decoding') or 'every record was decoded under the record grammar (`grammar.lark` in the run folder)'}"
            f"; seed: {card.get('seed')}"]),
        "",
        "Post-processing of DP output (sampling, parsing, this export) does not weaken the guarantee. "
        "Statistics computed from the private data without DP (such as exact-match counts against the "
        "training rows, how many private rows fell outside the spec's domain, the training loss and "
        "speed shown while training) are kept out of this folder.",
        "",
    ]
    return "\n".join(lines)


def _epsilon_after_each_stage(ledger) -> list[float]:
    """The run's ε once each stage is spent (the stages before it composed), at the run's δ."""
    import dataclasses

    out = []
    for i in range(1, len(ledger.events) + 1):
        eps = dataclasses.replace(ledger, events=ledger.events[:i]).epsilon()
        out.append(eps if math.isfinite(eps) else float("inf"))
    return out


def domain_shares(ledger) -> list[dict[str, Any]]:
    """Per DP domain estimate, the share of the N units' rows it cannot reproduce: 1 − (noisy count of
    the rows inside the released domain) / N.  DP: post-processing of the released noisy counts and
    the public N.  None for a nullable column (its missing rows are not counted) or without N."""
    n = ledger.n_units
    out = []
    for e in ledger.events:
        if not e.stage.startswith("domain:"):
            continue
        inside = e.details.get("inside_count")
        share = None
        if n and inside is not None and not e.details.get("nullable"):
            share = min(1.0, max(0.0, 1.0 - inside / n))
        out.append({"column": e.stage.split(":", 1)[1], "kind": e.details.get("estimate"), "share_outside": share})
    return out


# the scale the card reads ε on (Ponomareva et al., "How to DP-fy ML: A Practical Guide to Machine
# Learning with Differential Privacy", JAIR 77, 2023, §5.2: tier 1 ε ≤ 1, tier 2 ε ≤ 10, tier 3 above)
EPSILON_SCALE = ((1.0, "strong"), (10.0, "reasonable (ε of about 1 to 8 is where most DP-SGD training sits)"))


def _what_it_means(p: dict[str, Any], items: str) -> list[str]:
    """The guarantee in plain words: the odds ratio, the scale, δ against 1/N, what DP domains cut."""
    eps, delta, unit = p["epsilon"], p["delta"], p["privacy_unit"]
    if not math.isfinite(eps):
        return []
    grade = next((g for bound, g in EPSILON_SCALE if eps <= bound), "weak")
    ratio = math.exp(eps)
    lines = ["", "## What this means", "",
             f"Whatever anyone concludes from this data, the odds of that conclusion differ by a factor of at most "
             f"e^ε = {ratio:.3g} between the private data set with any one {unit} and without it, except with "
             f"probability at most δ = {delta:.3g}. So these {items} say about as much about any one {unit} as they "
             f"would if that {unit} had never been in the private data, up to that factor.",
             "",
             f"On the usual scale (Ponomareva et al., *How to DP-fy ML*, JAIR 2023, §5.2: ε ≤ 1 strong, ε ≤ 10 "
             f"reasonable, above 10 weak) ε = {_fmt(eps)} is **{grade.split(' (')[0]}**"
             + (f" ({grade.split(' (', 1)[1]}" if " (" in grade else "") + "."]
    n = p.get("n_units")
    if n:
        lines += ["", f"N = {n} {unit}s were read (N is treated as public: it sets δ and the sampling rate). "
                  f"δ = {delta:.3g} is {delta * n:.3g} × 1/N"
                  + ("; a δ well below 1/N means no one " + unit + "'s data is let out whole by chance."
                     if delta * n <= 0.1 else "; below 1/N, but not by much (a δ well below 1/N is the usual choice)."
                     if delta * n < 1 else "; **δ is not below 1/N: one " + unit + " in N could be let out whole.**")]
    cut = [d for d in p.get("domains", []) if d.get("share_outside") is not None]
    if cut:
        lines += ["", "Rows the DP domains cannot reproduce (a DP estimate from the released noisy counts and N; "
                  "such values are clamped into the domain, or become `(other)`, or their rows are left out):", ""]
        lines += [f"- `{d['column']}` ({d['kind']}): about {d['share_outside']:.0%} of rows" for d in cut]
    return lines


def privacy_block(ledger, *, max_examples_per_user: int | None = None) -> dict[str, Any]:
    eps = ledger.epsilon()
    after = _epsilon_after_each_stage(ledger)
    return {
        "n_units": ledger.n_units,
        "domains": domain_shares(ledger),
        "epsilon": eps if math.isfinite(eps) else float("inf"),
        "delta": ledger.delta,
        "accountant": ledger.accountant,
        "privacy_unit": ledger.privacy_unit,
        "max_examples_per_user": max_examples_per_user,
        "extra_delta": ledger.extra_delta,
        "caveats": list(ledger.caveats),
        "accountant_delta": ledger.accountant_delta,
        "stages": [
            {"stage": e.stage, "noise_multiplier": e.noise_multiplier, "sample_rate": e.sample_rate,
             "steps": e.steps, "details": e.details, "extra_delta": e.extra_delta, "mechanism": e.mechanism,
             "epsilon_after": eps_after}
            for e, eps_after in zip(ledger.events, after, strict=True)
        ],
    }
