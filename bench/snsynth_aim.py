"""smartnoise-synth's AIM on a coded table (run by bench/census_columns.py inside its own venv, since
smartnoise-synth 1.0.8 pins opacus < 0.15 and mbi < 2).

    python bench/snsynth_aim.py CODED.csv OUT.csv EPSILON DELTA SEED [DOMAIN.json]

Every column of CODED.csv is a categorical code (the bench bins the numbers on the same public bins as
dpsynth's column model and decodes the samples the same way), so the comparison is of the mechanisms.
With DOMAIN.json ({column: number of codes}), smartnoise's label transformer is fitted on that public
domain (every code 0..size-1) before it sees the private rows, as dpsynth's column model is; without
it, smartnoise builds each column's domain from the codes that occur in the private rows (its default,
which is not differentially private).
"""

import json
import sys
import time

import numpy as np
import pandas as pd


def main() -> None:
    src, out, eps, delta, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    np.random.seed(seed)  # smartnoise's AIM draws its noise and selections from numpy's global generator
    from snsynth.aim import AIMSynthesizer

    frame = pd.read_csv(src, dtype=str)
    transformer = public_transformer(json.loads(open(sys.argv[6]).read()), frame) if len(sys.argv) > 6 else None
    start = time.time()
    synth = AIMSynthesizer(epsilon=eps, delta=delta)
    synth.fit(frame, transformer=transformer, categorical_columns=list(frame.columns), preprocessor_eps=0.0)
    sample = synth.sample(len(frame))
    pd.DataFrame(sample, columns=frame.columns).to_csv(out, index=False)
    print(f"fit+sample {time.time() - start:.1f} s", file=sys.stderr)


def public_transformer(sizes: dict, frame: pd.DataFrame):
    """A table transformer whose label transformers know every public code of every column (fitted on a
    frame of the codes alone, no private row)."""
    from snsynth.transform.label import LabelTransformer
    from snsynth.transform.table import TableTransformer

    longest = max(sizes.values())
    public = pd.DataFrame({c: [str(i % sizes[c]) for i in range(longest)] for c in frame.columns})
    transformer = TableTransformer([LabelTransformer(nullable=False) for _ in frame.columns])
    transformer.fit(public)
    assert transformer.cardinality == [sizes[c] for c in frame.columns], transformer.cardinality
    return transformer


if __name__ == "__main__":
    main()
