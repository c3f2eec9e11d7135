"""dpsynth's DP-SGD engine for PyTorch / Hugging Face models."""

from .accounting import PrivacyLedger, calibrate_noise_multiplier
from .clipping import register_layer
from .config import TrainConfig
from .engine import DPEngine
from .errors import (
    BudgetExceededError,
    ConfigError,
    DPSynthError,
    PrivacyViolationError,
    UnsupportedLayerError,
)
from .loop import DPTrainer, TrainResult, train_model
from .noise import privatize_gradients
from .sampling import PoissonSampler

__all__ = [
    "BudgetExceededError",
    "ConfigError",
    "DPEngine",
    "DPSynthError",
    "DPTrainer",
    "PoissonSampler",
    "PrivacyLedger",
    "PrivacyViolationError",
    "TrainConfig",
    "TrainResult",
    "UnsupportedLayerError",
    "calibrate_noise_multiplier",
    "privatize_gradients",
    "register_layer",
    "train_model",
]
