"""CSV exports that a spreadsheet opens as data: a text cell starting with = + - @, a tab or a carriage
return would be run as a formula (CSV injection), so it gets a leading apostrophe, as OWASP advises."""

from __future__ import annotations

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formula(cell: object) -> object:
    """A text cell a spreadsheet would run as a formula, with a leading apostrophe; others as they are."""
    return f"'{cell}" if isinstance(cell, str) and cell.startswith(FORMULA_STARTS) else cell


def safe_csv(table: pd.DataFrame) -> str:
    """``table`` as CSV (no index), every text cell that could start a formula neutralised."""
    return table.map(neutralise_formula).to_csv(index=False)
