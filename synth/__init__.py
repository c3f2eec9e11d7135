"""dpsynth's private generators: records with text fields, decoded under their grammar."""

from .lm import ModelChoice
from .pipeline import run
from .records.generator import RecordGenerator
from .run_config import SynthConfig, build_config
from .spec import ColumnSpec, DatasetSpec

__all__ = ["ColumnSpec", "DatasetSpec", "ModelChoice", "RecordGenerator", "SynthConfig", "build_config", "run"]
