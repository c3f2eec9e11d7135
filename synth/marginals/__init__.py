"""DP marginal models of a table's categorical and numeric columns (AIM or MST on mbi / private-pgm).

A floor: the records road uses it for the non-text part of a record; other rooms may use it for
label tables.  ``coding`` maps columns to codes over their public domains, ``aim`` and ``mst`` are
the mechanisms (their selections and measurements), ``column_model`` the fitted, saveable sampler.
"""

from .coding import ColumnCode, column_codes
from .column_model import ColumnModel, ColumnModelSettings

__all__ = ["ColumnCode", "ColumnModel", "ColumnModelSettings", "column_codes"]
