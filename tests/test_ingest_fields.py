"""Field validators and name splitting, value by value."""

from __future__ import annotations

import pandas as pd
import pytest

from ingest import fields
from ingest.mapping import split_full_name


def _text(*values: str) -> pd.Series:
    return pd.Series(list(values), dtype=fields.TEXT)


def _pairs(checked: fields.Checked) -> list[tuple]:
    values = [None if pd.isna(v) else v for v in checked.values]
    problems = [None if pd.isna(p) else p for p in checked.problems]
    return list(zip(values, problems, strict=True))


def test_phone_keeps_ten_digits_and_flags_the_rest():
    checked = fields.phone(_text("(336) 555-0142", "1-336-555-0142", "", "555-12", "0365550142"))
    assert _pairs(checked) == [
        ("3365550142", None),
        ("3365550142", None),
        (None, None),
        (None, "invalid"),
        (None, "invalid"),
    ]


def test_zip_cuts_zip_plus_four_and_flags_the_rest():
    checked = fields.zip_code(
        _text("27260", "27262-1234", "272621234", "2726", "ABCDE", "00000", " ")
    )
    assert _pairs(checked) == [
        ("27260", None),
        ("27262", None),
        ("27262", None),
        (None, "invalid"),
        (None, "invalid"),
        (None, "invalid"),
        (None, None),
    ]


def test_ssn_last4_needs_four_digits():
    checked = fields.ssn_last4(_text("0123", "12a4", "123", "0000", ""))
    assert _pairs(checked) == [
        ("0123", None),
        (None, "invalid"),
        (None, "invalid"),
        (None, "invalid"),
        (None, None),
    ]


@pytest.mark.parametrize(
    ("value", "fmt", "expected"),
    [
        ("10-Jun-2020", "%d-%b-%Y", "2020-06-10"),
        ("10-JUN-2020", "%d-%b-%Y", "2020-06-10"),  # case differs: the strict parser accepts it
        ("31-Feb-2020", "%d-%b-%Y", None),  # a lenient parser would say 2 March
        ("2020011", "%Y%m%d", None),  # a digit short
        ("20200101", "%Y%m%d", "2020-01-01"),
        ("06/01/2020 22:15", "%m/%d/%Y %H:%M", "2020-06-01 22:15"),
        ("13/01/2020", "%m/%d/%Y", None),
        ("6/1/2020", "%m/%d/%Y", "2020-06-01"),  # unpadded
        ("2020-06-02 01:30:05", "%Y-%m-%d %H:%M:%S", "2020-06-02 01:30:05"),
    ],
)
def test_dates_parse_strictly(value, fmt, expected):
    checked = fields.parse_datetimes(_text(value), [fmt])
    parsed = checked.values.iloc[0]
    if expected is None:
        assert pd.isna(parsed) and checked.problems.iloc[0] == "unparseable"
    else:
        assert parsed == pd.Timestamp(expected) and pd.isna(checked.problems.iloc[0])


def test_dates_try_each_format_in_turn():
    checked = fields.parse_datetimes(
        _text("06/01/2020 22:15", "06/02/2020", "", "soon"), ["%m/%d/%Y %H:%M", "%m/%d/%Y"]
    )
    assert list(checked.values[:2]) == [
        pd.Timestamp("2020-06-01 22:15"),
        pd.Timestamp("2020-06-02"),
    ]
    assert _pairs(checked)[2:] == [(None, None), (None, "unparseable")]


def test_dob_plausibility():
    event = pd.Series(pd.to_datetime(["2020-06-01"] * 5))
    checked = fields.dob(
        _text("1985-03-14", "1850-01-01", "2015-01-01", "1900-01-01", "1985-02-30"),
        ["%Y-%m-%d"],
        event,
        min_year=1900,
        min_age=10,
        max_age=110,
    )
    assert [p if not pd.isna(p) else None for p in checked.problems] == [
        None,
        "before_min_year",
        "age_out_of_range",
        "age_out_of_range",
        "unparseable",
    ]
    assert checked.values.iloc[0] == pd.Timestamp("1985-03-14") and checked.values[1:].isna().all()


def test_flags_and_codes():
    flags = fields.flag(_text("Y", "n", "", "maybe"), ["Y"], ["N", ""])
    assert _pairs(flags) == [(True, None), (False, None), (False, None), (None, "unparseable")]
    codes = fields.code(_text("M", "female", "Q", ""), {"M": "male"}, frozenset({"male", "female"}))
    assert _pairs(codes) == [("male", None), ("female", None), (None, "unknown_code"), (None, None)]


@pytest.mark.parametrize(
    ("name", "fmt", "expected"),
    [
        ("GARCIA LOPEZ, MARIA ELENA", "last_comma_first", ("MARIA", "ELENA", "GARCIA LOPEZ", None)),
        ("SMITH JR, JOHN", "last_comma_first", ("JOHN", None, "SMITH", "JR")),
        ("SMITH, JOHN PAUL III", "last_comma_first", ("JOHN", "PAUL", "SMITH", "III")),
        ("MADONNA", "last_comma_first", (None, None, "MADONNA", None)),
        ("Robert Dennis Rockton Jr", "first_last", ("Robert", "Dennis", "Rockton", "JR")),
        ("Ana de la Cruz", "first_last", ("Ana", "de la", "Cruz", None)),
        ("  Lori   Hartrick ", "first_last", ("Lori", None, "Hartrick", None)),
        ("", "first_last", (None, None, None, None)),
    ],
)
def test_full_name_split(name, fmt, expected):
    parts = split_full_name(_text(name), fmt)
    got = tuple(
        None if pd.isna(parts[p].iloc[0]) else parts[p].iloc[0]
        for p in ("first_name", "middle_name", "last_name", "suffix")
    )
    assert got == expected
