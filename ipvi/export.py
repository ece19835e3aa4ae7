"""Files that leave the registry for a spreadsheet: text a spreadsheet could run is escaped.

A cell starting with ``= + - @``, a tab or a carriage return is read by spreadsheet programs as
a formula (CSV injection); :func:`escape_cell` quotes it so it shows as text. Every CSV the
project writes for people (the review queue, ``ipvi dedupe`` output, the coordinators' tier
list) goes through it. HTML output escapes every value with :func:`html.escape` or Jinja's
autoescape instead.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from ipvi.errors import IpviError

FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")


def escape_cell(value):
    """Quote a text cell a spreadsheet would read as a formula; other values pass unchanged.

    >>> escape_cell("=HYPERLINK(1)"), escape_cell("-3"), escape_cell(0.5)
    ("'=HYPERLINK(1)", "'-3", 0.5)
    """
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """Write ``frame`` as UTF-8 CSV with formula-like text cells (and headers) escaped."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object:
            out[column] = out[column].map(escape_cell)
    out.columns = [escape_cell(str(column)) for column in out.columns]
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        out.to_csv(path, index=False, quoting=csv.QUOTE_MINIMAL)
    except OSError as error:
        raise IpviError(f"cannot write {path}: {error.strerror}") from None
