"""`dpsynth init DATA`: draft a run config from the data file's schema (column names and kinds)."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("init", help="draft a run config (TOML) from a data file's schema, to review and then run",
                       description="Reads the column names and how each column's values look (text, categorical, "
                       "integer, float, nullable) and writes a commented run config. No value, category, range or "
                       "length of the data is written: every domain is a DP estimate paid from the budget "
                       "(estimate = true) until you declare it.")
    p.add_argument("data", type=Path, help="the private data file: .csv, .jsonl or .parquet")
    p.add_argument("--out", type=Path, default=None, help="where to write the draft (default: ./<data name>.toml)")
    p.add_argument("--epsilon", type=float, default=4.0, help="target ε of the whole run (default: 4)")
    p.add_argument("--force", action="store_true", help="replace an existing draft")


def run(args) -> int:
    from ..drafting import write_draft

    out = args.out or Path(f"{args.data.stem}.toml")
    draft = write_draft(args.data, out, epsilon=args.epsilon, force=args.force)
    print(f"wrote {out}: {len(draft.columns)} columns")
    for c in draft.columns:
        print(f"  {c.name:<24} {c.type + (' (nullable)' if c.nullable else ''):<22} {c.why}")
    for name, why in draft.left_out.items():
        print(f"  left out: {name}: {why}")
    print(f"Every domain is a DP estimate (paid); declare the ones you know publicly in {out} to save budget.")
    print(f"Next: dpsynth run {out} --dry-run   (the plan), then dpsynth run {out}")
    return 0
