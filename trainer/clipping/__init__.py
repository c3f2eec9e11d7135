"""Per-layer DP rules.  Importing this package registers the built-in ones."""

from . import conv, embedding, group_norm, linear, norms  # noqa: F401  (registration side effect, one place)
from .registry import LayerRule, register_layer, registered, rule_for

__all__ = ["LayerRule", "register_layer", "registered", "rule_for"]
