"""smartnoise-synth's AIM on a coded table (run by bench/census_columns.py inside its own venv, since
smartnoise-synth 1.0.8 pins opacus < 0.15 and mbi < 2).

    python bench/snsynth_aim.py CODED.csv OUT.csv EPSILON DELTA SEED

Every column of CODED.csv is a categorical code (the bench bins the numbers on the same public bins as
dpsynth's column model and decodes the samples the same way), so the comparison is of the mechanisms.
"""

import sys
import time

import numpy as np
import pandas as pd


def main() -> None:
    src, out, eps, delta, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    np.random.seed(seed)  # smartnoise's AIM draws its noise and selections from numpy's global generator
    from snsynth.aim import AIMSynthesizer

    frame = pd.read_csv(src, dtype=str)
    start = time.time()
    synth = AIMSynthesizer(epsilon=eps, delta=delta)
    synth.fit(frame, categorical_columns=list(frame.columns), preprocessor_eps=0.0)
    sample = synth.sample(len(frame))
    pd.DataFrame(sample, columns=frame.columns).to_csv(out, index=False)
    print(f"fit+sample {time.time() - start:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
