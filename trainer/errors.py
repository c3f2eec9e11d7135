"""One exception root for dpsynth; each error also inherits the matching built-in."""

from __future__ import annotations


def nearest_key_hint(key: str, valid: list[str]) -> str:
    """"; did you mean 'x'?" for a mistyped config key, or the list of valid keys."""
    import difflib

    near = difflib.get_close_matches(key, valid, n=1)
    return f"; did you mean {near[0]!r}?" if near else f"; valid keys: {', '.join(valid)}"


class DPSynthError(Exception):
    """Root of every error dpsynth raises on purpose."""


class ConfigError(DPSynthError, ValueError):
    """A configuration value, or a combination of them, is impossible."""


class UnsupportedLayerError(DPSynthError, TypeError):
    """A trainable parameter sits in a module the DP engine cannot clip per sample."""


class AmbiguousRowsError(UnsupportedLayerError):
    """A layer's input has as many entries in dimension 1 as the micro-batch has rows: which
    dimension holds the rows is not certain.  DPTrainer retries with one zero-weight row more."""


class BudgetExceededError(DPSynthError, ValueError):
    """The privacy budget cannot pay for what was asked."""


class PrivacyViolationError(DPSynthError, RuntimeError):
    """A gradient reached a parameter without passing through per-sample clipping."""
