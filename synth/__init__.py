"""dpsynth's private generators: tables with text fields, text corpora, images and albums.

``from synth import fit`` is the Python front door (synth/api.py).  Names are imported on first use,
so ``import synth`` stays light (torch and the models load when a generator needs them).
"""

from importlib import import_module

_EXPORTS = {
    "fit": ".api", "load": ".api", "Synthesizer": ".api",
    "ColumnSpec": ".spec", "DatasetSpec": ".spec",
    "ModelChoice": ".lm", "RecordGenerator": ".records.generator",
    "SynthConfig": ".run_config", "build_config": ".run_config", "run": ".pipeline",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'synth' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value
