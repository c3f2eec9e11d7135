"""dpsynth's DP-SGD engine for PyTorch / Hugging Face models."""

from .engine import DPEngine, clip_factors
from .errors import (
    BudgetExceededError,
    ConfigError,
    DPSynthError,
    PrivacyViolationError,
    UnsupportedLayerError,
)
from .clipping import register_layer

__all__ = [
    "BudgetExceededError",
    "ConfigError",
    "DPEngine",
    "DPSynthError",
    "PrivacyViolationError",
    "UnsupportedLayerError",
    "clip_factors",
    "register_layer",
]
