"""ipvi.export: a CSV written for people never holds a cell a spreadsheet would run."""

from __future__ import annotations

import csv

import pandas as pd
import pytest

from ipvi.errors import IpviError
from ipvi.export import FORMULA_PREFIXES, escape_cell, write_csv


@pytest.mark.parametrize("prefix", FORMULA_PREFIXES)
def test_formula_like_text_is_quoted_and_other_values_pass(prefix):
    assert escape_cell(f"{prefix}HYPERLINK(1)") == f"'{prefix}HYPERLINK(1)"
    assert escape_cell("B-1") == "B-1" and escape_cell("") == ""
    assert escape_cell(-3) == -3 and escape_cell(None) is None


def test_write_csv_escapes_cells_and_headers_and_round_trips_the_rest(tmp_path):
    frame = pd.DataFrame({"=id": ["=cmd|' /C calc'!A0", "P1"], "score": [0.5, -1.0]})
    path = tmp_path / "out" / "pairs.csv"
    write_csv(frame, path)
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows == [["'=id", "score"], ["'=cmd|' /C calc'!A0", "0.5"], ["P1", "-1.0"]]


def test_write_csv_to_an_unwritable_place_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(IpviError, match="cannot write"):
        write_csv(pd.DataFrame({"a": [1]}), blocker / "out.csv")
