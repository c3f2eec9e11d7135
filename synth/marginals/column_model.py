"""ColumnModel: a DP graphical model of a table's categorical and numeric columns that samples rows.

Fitted with AIM (``aim.py``), MST (``mst.py``) or a fixed workload of pairs (``pairs.py``) on the columns' public codes (``coding.py``); what it keeps is
the graphical model's potentials, a post-processing of the noisy measurements.  It has the
conditioning distributions' interface (``columns``, ``sample(n, rng)`` -> tuples), so the
records road can draw a record's non-text columns from it and let the DP LM write the text
columns given them.  Saved as JSON + ``potentials.npz`` (plain arrays, no pickle).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainer.io import atomic_directory

from ..spec import ColumnSpec
from .aim import AIMSettings, AIMSpend, run_aim
from .coding import ColumnCode, column_codes


@dataclass
class ColumnModelSettings(AIMSettings):
    """The mechanisms' settings (MST and pairs use max_cells, coarse_groups and pgm_iters; the run config's [columns] section adds
    the road and the budget share)."""


MECHANISMS = ("aim", "mst", "pairs")
# mechanisms whose every release is a Gaussian measurement at a noise level fixed before the data is
# read: any accountant (PRV included) composes them; the others select with the exponential mechanism
# (ρ-zCDP), which only RDP composes
GAUSSIAN_ONLY = ("pairs",)


class ColumnModel:
    def __init__(self, codes: list[ColumnCode], model, spend: AIMSpend, *, sensitivity: int = 1,
                 mechanism: str = "aim"):
        self.mechanism = mechanism
        self.source = f"DP column model ({mechanism.upper()}, mbi)"
        self.codes = codes
        self.model = model  # mbi MarkovRandomField
        self.spend = spend
        self.sensitivity = sensitivity

    @property
    def columns(self) -> list[str]:
        return [c.name for c in self.codes]

    # ------------------------------------------------------------------ fit
    @classmethod
    def fit(cls, frame: pd.DataFrame, columns: list[ColumnSpec], rho: float, *, rng: np.random.Generator,
            sensitivity: int = 1, settings: AIMSettings | None = None, progress: bool = False,
            source: str = "data", mechanism: str = "aim") -> "ColumnModel":
        """AIM, MST or the pairs workload inside ρ-zCDP on ``frame``'s ``columns``.  ``sensitivity``: rows a unit may hold
        (the caller keeps at most that many per user)."""
        from tqdm.auto import tqdm

        from .mst import run_mst
        from .pairs import run_pairs

        if mechanism not in MECHANISMS:
            raise ValueError(f"unknown column model {mechanism!r}; one of {MECHANISMS}")
        codes = column_codes(columns)
        data = {c.name: c.encode(frame[c.name].reset_index(drop=True), source=source) for c in codes}
        sizes = {c.name: c.size for c in codes}
        with _quiet_jax(), tqdm(total=100, desc=f"column model ({mechanism.upper()})", unit="% of ρ",
                                disable=not progress) as bar:
            def report(fraction: float, clique) -> None:
                bar.update(round(100 * fraction) - bar.n)
                bar.set_postfix_str(f"measured {'×'.join(clique)}")

            mechanism_fn = {"aim": run_aim, "mst": run_mst, "pairs": run_pairs}[mechanism]
            ordered = {c.name: c.values_size for c in codes if c.edges is not None}
            model, spend = mechanism_fn(data, sizes, rho, rng, sensitivity=sensitivity, settings=settings,
                                        progress=report, ordered=ordered)
        return cls(codes, model, spend, sensitivity=sensitivity, mechanism=mechanism)

    # --------------------------------------------------------------- sample
    def sample_codes(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``n`` rows of codes (mbi's randomised rounding of the model's marginals; mbi draws from numpy's
        global generator, which is seeded from ``rng`` here and restored after)."""
        state = np.random.get_state()
        np.random.seed(int(rng.integers(2**32)))
        try:
            with _quiet_jax():
                synthetic = self.model.synthetic_data(rows=n)
        finally:
            np.random.set_state(state)
        data = synthetic.to_dict()
        order = rng.permutation(n)  # mbi's rounding emits rows grouped by value
        return {c: np.asarray(data[c])[order] for c in self.columns}

    def sample(self, n: int, rng: np.random.Generator) -> list[tuple]:
        """``n`` rows as tuples in ``self.columns`` order (the conditioning interface)."""
        frame = self.sample_frame(n, rng)
        return list(frame.itertuples(index=False, name=None))

    def sample_frame(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        codes = self.sample_codes(n, rng)
        return pd.DataFrame({c.name: c.decode(codes[c.name], rng) for c in self.codes})

    # ---------------------------------------------------------- description
    def to_dict(self) -> dict[str, Any]:
        """What the card says about the model (no private statistic: the columns' public coding and
        which marginals AIM chose to measure)."""
        return {"source": self.source, "columns": self.columns, "coding": [c.describe() for c in self.codes],
                "measured_marginals": [self.spend.describe(i) for i, cl in enumerate(self.spend.measured) if len(cl) > 1],
                "left_out_pairs": ["×".join(cl) for cl in self.spend.left_out],
                "rho": self.spend.rho, "sensitivity": self.sensitivity, "mechanism": self.mechanism}

    # ---------------------------------------------------------- persistence
    def save_pretrained(self, directory: str | Path) -> None:
        tables = list(self.model.potentials.tables.values())
        meta = {"kind": "dpsynth.ColumnModel", "codes": [dataclasses.asdict(c) for c in self.codes],
                "cliques": [list(f.domain.attributes) for f in tables], "total": float(self.model.total),
                "sensitivity": self.sensitivity, "spend": dataclasses.asdict(self.spend), "mechanism": self.mechanism}
        with atomic_directory(directory) as tmp:
            (tmp / "column_model.json").write_text(json.dumps(meta, indent=2))
            np.savez(tmp / "potentials.npz", **{f"clique_{i}": np.asarray(f.values) for i, f in enumerate(tables)})

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "ColumnModel":
        from mbi import CliqueVector, Domain, Factor, MarkovRandomField
        from mbi.marginal_oracles import message_passing_stable

        directory = Path(directory)
        meta = json.loads((directory / "column_model.json").read_text())
        codes = [ColumnCode(**c) for c in meta["codes"]]
        domain = Domain([c.name for c in codes], [c.size for c in codes])
        with np.load(directory / "potentials.npz", allow_pickle=False) as arrays:
            cliques = [tuple(cl) for cl in meta["cliques"]]
            tables = {cl: Factor(domain.project(cl), arrays[f"clique_{i}"]) for i, cl in enumerate(cliques)}
        potentials = CliqueVector(domain, cliques, tables)
        with _quiet_jax():
            marginals = message_passing_stable(potentials, meta["total"])
        spend = meta["spend"]
        spend = AIMSpend(spend["measure_multipliers"], spend["select_rhos"], [tuple(c) for c in spend["measured"]],
                         spend.get("coarsened", []), spend.get("coarse_groups"),
                         [tuple(c) for c in spend.get("left_out", [])])
        return cls(codes, MarkovRandomField(potentials=potentials, marginals=marginals, total=meta["total"]), spend,
                   sensitivity=meta["sensitivity"], mechanism=meta.get("mechanism", "aim"))


@contextlib.contextmanager
def _quiet_jax():
    """mbi warns at import about JAX's float32 mode and compilation cache: set both as it asks."""
    import warnings

    import jax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_enable_compilation_cache", False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="JAX", category=UserWarning)
        import mbi  # noqa: F401  (its import-time warnings, once, silenced)
        yield
