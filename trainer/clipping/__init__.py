"""Per-layer DP rules.  Importing this package registers the built-in ones."""

from . import embedding, linear, norms  # noqa: F401  (registration side effect, one place)
from .registry import LayerRule, register_layer, registered, rule_for

__all__ = ["LayerRule", "register_layer", "registered", "rule_for"]
