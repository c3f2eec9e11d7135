"""The one registry from module type to its DP forward rule.

A rule replaces the module's forward while the engine is capturing: it runs the
same computation through an autograd Function whose backward hands the engine a
per-unit gradient representation (see ``grads.py``) for each trainable parameter
instead of letting autograd sum the batch.  Rules register with a decorator::

    @register_layer(nn.Linear, handles=("weight", "bias"))
    def linear_forward(module, call, x): ...

``call`` is the engine's handle for this one forward call (see ``engine._Call``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from ..errors import ConfigError

LAYOUTS = ("sequence", "channels")


@dataclass(frozen=True)
class LayerRule:
    module_type: type
    handles: tuple[str, ...]  # names of the module's own parameters the rule clips
    forward: Callable
    # how the rule's input is laid out: "sequence" (B, T, ..., features): dimension 1 may be a
    # sequence, so B entries there make the rows ambiguous and are refused; "channels" (B, C, H, W):
    # dimension 1 is channels, as in every PyTorch conv, and is not checked
    layout: str = "sequence"


_RULES: dict[type, LayerRule] = {}
# (predicate, rule) pairs consulted after the exact-type lookup, for families of
# classes that share a shape but not a base class (the many *RMSNorm of HF).
_FAMILY_RULES: list[tuple[Callable[[nn.Module], bool], LayerRule]] = []


def register_layer(module_type: type, *, handles: tuple[str, ...], force: bool = False, layout: str = "sequence"):
    """Decorator: register ``forward`` as the DP rule for ``module_type``.

    Registering a type twice raises unless ``force=True`` (to override a rule deliberately).
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")

    def wrap(forward: Callable) -> Callable:
        if module_type in _RULES and not force:
            raise ConfigError(
                f"a DP rule for {module_type.__name__} is already registered; pass force=True to replace it"
            )
        _RULES[module_type] = LayerRule(module_type, tuple(handles), forward, layout)
        return forward

    return wrap


def register_family(predicate: Callable[[nn.Module], bool], *, handles: tuple[str, ...]):
    """Decorator: a rule for every module ``predicate`` accepts (checked after exact types)."""

    def wrap(forward: Callable) -> Callable:
        _FAMILY_RULES.append((predicate, LayerRule(nn.Module, tuple(handles), forward)))
        return forward

    return wrap


def rule_for(module: nn.Module) -> LayerRule | None:
    rule = _RULES.get(type(module))
    if rule is not None:
        return rule
    for predicate, family_rule in _FAMILY_RULES:
        if predicate(module):
            return family_rule
    return None


def registered() -> dict[type, LayerRule]:
    """A copy of the exact-type registry (tests parametrise over it)."""
    return dict(_RULES)
