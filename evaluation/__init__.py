"""Struct-Bench-style evaluation of synthetic records.  Does not import synth."""

from .encoder import Encoder
from .evaluate import evaluate, load_card
from .grammar import GrammarError, ParsedRecord, RecordGrammar
from .metrics.base import MetricRecord
from .report import EvaluationReport
from .spec import EvalSpec
from .tables import DataError, load_table
from .text import evaluate_text

__all__ = [
    "DataError",
    "Encoder",
    "EvalSpec",
    "EvaluationReport",
    "GrammarError",
    "MetricRecord",
    "ParsedRecord",
    "RecordGrammar",
    "evaluate",
    "evaluate_text",
    "load_card",
    "load_table",
]
