"""Vectorised field validators: parse one column, null what is unusable and say why.

Every validator takes the raw column (a pandas string Series, empty string = missing) and returns
a :class:`Checked`: the cleaned values and, per row, the problem code or ``<NA>``. A missing value
is not a problem; a value that is present but unusable is. Problem codes name the field's problem,
never the value, so they are safe in logs and messages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ipvi.schema import TEXT

# Problem codes (stored in field_issues.problem and quarantine.detail).
UNPARSEABLE = "unparseable"
BEFORE_MIN_YEAR = "before_min_year"
AGE_OUT_OF_RANGE = "age_out_of_range"
INVALID = "invalid"
UNKNOWN_CODE = "unknown_code"
MISSING = "missing"

DAYS_PER_YEAR = 365.2425


@dataclass(frozen=True)
class Checked:
    """The cleaned column and the problem of each row (``<NA>`` where there is none)."""

    values: pd.Series
    problems: pd.Series


def mask(condition: pd.Series | np.ndarray) -> np.ndarray:
    """A plain boolean array from any (nullable) boolean column; missing counts as False."""
    if isinstance(condition, pd.Series):
        return condition.to_numpy(dtype=bool, na_value=False)
    return np.asarray(condition, dtype=bool)


def stripped(raw: pd.Series) -> pd.Series:
    """Whitespace-stripped text with missing as the empty string (so masks never hold NA)."""
    return raw.fillna("").str.strip()


def blank(raw: pd.Series) -> np.ndarray:
    """Whether each raw value is missing (empty or only whitespace)."""
    return mask(stripped(raw) == "")


def text(raw: pd.Series) -> pd.Series:
    """Whitespace-stripped text, ``<NA>`` where blank."""
    value = stripped(raw)
    return value.mask(blank(raw))


def _problems(index: pd.Index, where: np.ndarray, code: str) -> pd.Series:
    problems = pd.Series(pd.NA, index=index, dtype="string")
    problems[where] = code
    return problems


def _canonical_text(text: pa.Array) -> pa.Array:
    """Upper case, leading zeros of each number dropped: "06/01/2020" ~ "6/1/2020"."""
    return pc.replace_substring_regex(pc.utf8_upper(text), r"(^|\D)0+(\d)", r"\1\2")


def _strptime(value: pd.Series, fmt: str) -> pd.Series:
    """Parse with one format; ``NaT`` where the value does not fit it exactly.

    Arrow's C parser is fast but lenient (31 Feb becomes 2 March, "2020011" passes for
    %Y%m%d), so a value counts only when formatting the result gives the same text back, up to
    case and leading zeros.
    """
    text = pa.array(value.astype(TEXT).array)
    parsed = pc.strptime(text, format=fmt, unit="s", error_is_null=True)
    back = pc.strftime(parsed, format=fmt)
    same = pc.fill_null(pc.equal(back, text), False)
    # Only the few values that differ in case or padding need the (slower) canonical compare.
    redo = pc.and_(pc.invert(same), pc.is_valid(parsed))
    if pc.any(redo).as_py():
        near = pc.equal(
            _canonical_text(pc.filter(back, redo)), _canonical_text(pc.filter(text, redo))
        )
        positions = np.flatnonzero(redo.to_numpy(zero_copy_only=False))
        same = same.to_numpy(zero_copy_only=False).copy()
        same[positions] = near.to_numpy(zero_copy_only=False)
        same = pa.array(same)
    kept = pc.if_else(same, parsed, pa.scalar(None, parsed.type))
    return pd.Series(kept.to_numpy(zero_copy_only=False), index=value.index).astype(
        "datetime64[ns]"
    )


def parse_datetimes(raw: pd.Series, formats: list[str]) -> Checked:
    """Parse with each strptime format in turn; the first that fits a value wins.

    Returns datetimes (``NaT`` where blank or unparseable) and the problem
    :data:`UNPARSEABLE` where a non-blank value fits no format.
    """
    value = stripped(raw)
    parsed = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns]")
    todo = ~blank(raw)
    for fmt in formats:
        if not todo.any():
            break
        parsed[todo] = _strptime(value[todo], fmt).to_numpy()
        todo &= mask(parsed.isna())
    return Checked(parsed, _problems(raw.index, todo, UNPARSEABLE))


def dob(
    raw: pd.Series,
    formats: list[str],
    event_date: pd.Series,
    *,
    min_year: int,
    min_age: float,
    max_age: float,
) -> Checked:
    """Dates of birth: parsed, then nulled when implausible for the event they appear in.

    A DOB before ``min_year``, or giving an age at the event date outside
    ``[min_age, max_age]`` years, is a field issue (the raw text is kept by the caller).
    """
    checked = parse_datetimes(raw, formats)
    parsed = checked.values.dt.normalize()
    age = (event_date - parsed).dt.days / DAYS_PER_YEAR
    early = mask(parsed.dt.year < min_year)
    out_of_range = ~early & mask((age < min_age) | (age > max_age))
    problems = checked.problems.copy()
    problems[early] = BEFORE_MIN_YEAR
    problems[out_of_range] = AGE_OUT_OF_RANGE
    return Checked(parsed.mask(mask(problems.notna())), problems)


def ssn_last4(raw: pd.Series) -> Checked:
    """The last four SSN digits: exactly four digits, and not ``0000`` (never issued)."""
    value = stripped(raw)
    ok = mask(value.str.fullmatch(r"\d{4}")) & mask(value != "0000")
    missing = blank(raw)
    bad = ~missing & ~ok
    return Checked(value.mask(bad | missing), _problems(raw.index, bad, INVALID))


def phone(raw: pd.Series) -> Checked:
    """A North American number as ten digits (a leading country code 1 is dropped).

    Punctuation is ignored; the area code and exchange cannot start with 0 or 1.
    """
    digits = stripped(raw).str.replace(r"\D", "", regex=True)
    country_code = mask((digits.str.len() == 11) & digits.str.startswith("1"))
    digits = digits.mask(country_code, digits.str.slice(1))
    ok = mask(digits.str.fullmatch(r"[2-9]\d{2}[2-9]\d{6}"))
    missing = blank(raw)
    bad = ~missing & ~ok
    return Checked(digits.mask(bad | missing), _problems(raw.index, bad, INVALID))


def zip_code(raw: pd.Series) -> Checked:
    """A five-digit ZIP code; ZIP+4 is cut to its first five digits; ``00000`` is invalid."""
    value = stripped(raw)
    ok = mask(value.str.fullmatch(r"\d{5}(?:-?\d{4})?")) & ~mask(value.str.startswith("00000"))
    missing = blank(raw)
    bad = ~missing & ~ok
    return Checked(value.str.slice(0, 5).mask(bad | missing), _problems(raw.index, bad, INVALID))


def flag(raw: pd.Series, true_values: list[str], false_values: list[str]) -> Checked:
    """Booleans from the agency's true/false spellings (case-insensitive)."""
    key = stripped(raw).str.upper()
    is_true = mask(key.isin([value.upper() for value in true_values]))
    is_false = mask(key.isin([value.upper() for value in false_values]))
    values = pd.Series(pd.NA, index=raw.index, dtype="boolean")
    values[is_true] = True
    values[is_false] = False
    bad = ~(is_true | is_false) & ~blank(raw)
    return Checked(values, _problems(raw.index, bad, UNPARSEABLE))


def code(raw: pd.Series, recode: dict[str, str], vocabulary: frozenset[str] | None) -> Checked:
    """Agency codes recoded to canonical values.

    A value is looked up (case-insensitively) in ``recode``; a value already canonical is kept.
    Anything else present is :data:`UNKNOWN_CODE` and nulled. Without a vocabulary, values not in
    ``recode`` are kept as written.
    """
    value = stripped(raw)
    upper = {key.strip().upper(): canonical for key, canonical in recode.items()}
    recoded = value.str.upper().map(upper).astype("string")
    if vocabulary is None:
        kept = recoded.fillna(value).mask(blank(raw))
        return Checked(kept, _problems(raw.index, np.zeros(len(raw), dtype=bool), INVALID))
    lower = value.str.lower()
    canonical = recoded.fillna(lower.where(mask(lower.isin(sorted(vocabulary)))))
    bad = ~blank(raw) & mask(canonical.isna())
    return Checked(canonical.mask(bad | blank(raw)), _problems(raw.index, bad, UNKNOWN_CODE))
