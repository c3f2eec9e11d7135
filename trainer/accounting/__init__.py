"""Privacy accounting: Opacus' PRV (default) and RDP accountants, calibration, the ledger."""

from .accountants import ACCOUNTANTS, calibrate_noise_multiplier, epsilon
from .ledger import PrivacyEvent, PrivacyLedger

__all__ = ["ACCOUNTANTS", "PrivacyEvent", "PrivacyLedger", "calibrate_noise_multiplier", "epsilon"]
