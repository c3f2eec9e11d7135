"""Struct-Bench-style evaluation of synthetic records (in progress: issue 4). Does not import synth."""

from .grammar import GrammarError, ParsedRecord, RecordGrammar
from .metrics.base import MetricRecord

__all__ = ["GrammarError", "MetricRecord", "ParsedRecord", "RecordGrammar"]
