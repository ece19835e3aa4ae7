"""A few genuinely malformed rows, so ingest's quarantine and field-issue paths get exercised.

Row-level defects (duplicate row, unusable event date, unknown event type) are put only on
rows whose loss changes nothing the exact ``p_recorded`` rests on (victim rows, court
dispositions, probation starts); field-level defects (DOB, zip, phone, SSN-4) go anywhere,
because ingest keeps those rows. Every injected defect is listed in ``truth/malformed_rows.csv``.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

# defect -> (share of the injected rows, expected ingest outcome, canonical field)
DEFECTS: dict[str, tuple[float, str, str]] = {
    "duplicate_row": (0.22, "quarantine", "record_id"),
    "bad_event_date": (0.18, "quarantine", "offense_date"),
    "bad_event_type": (0.10, "quarantine", "event_type"),
    "unparseable_dob": (0.18, "field_issue", "dob"),
    "dob_out_of_range": (0.07, "field_issue", "dob"),
    "bad_zip": (0.10, "field_issue", "zip"),
    "bad_phone": (0.08, "field_issue", "phone"),
    "bad_ssn_last4": (0.07, "field_issue", "ssn_last4"),
}
_BAD_DATES = np.array(["00/00/0000", "2019-13-45", "N/A", "UNKNOWN", "31.31.2020"], dtype=object)
_BAD_TYPES = np.array(["XX", "UNK", "??"], dtype=object)
_BAD_DOBS = np.array(["UNKNOWN", "0", "99999999", "1987-99-99", "31/31/1990", "N/A"], dtype=object)
_BAD_ZIPS = np.array(["2726", "ABCDE", "272601", "0"], dtype=object)
_BAD_PHONES = np.array(["555-12", "CALL ME", "12", "000"], dtype=object)
_BAD_SSNS = np.array(["12A4", "123", "99999", "XXXX"], dtype=object)
_REPLACEMENTS = {
    "bad_event_date": _BAD_DATES,
    "bad_event_type": _BAD_TYPES,
    "unparseable_dob": _BAD_DOBS,
    "bad_zip": _BAD_ZIPS,
    "bad_phone": _BAD_PHONES,
    "bad_ssn_last4": _BAD_SSNS,
}


def inject(
    rng: np.random.Generator,
    frame: pd.DataFrame,
    rows: pd.DataFrame,
    mapping,
    *,
    agency: str,
    prefix: str,
    share: float,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Corrupt about ``share`` of the rows of one extract (in place); return it and the list of
    defects."""
    cols = mapping.columns
    n = len(frame)
    total = int(round(share * n))
    role, etype = rows["role"].to_numpy(), rows["event_type"].to_numpy()
    expendable = (role == "victim") | (etype == "disposition") | (etype == "probation_start")
    used = np.zeros(n, dtype=bool)
    found: list[pd.DataFrame] = []
    duplicates = []
    for defect, (weight, outcome, field) in DEFECTS.items():
        if field not in cols and defect != "duplicate_row":
            continue
        count = int(round(weight * total))
        # a duplicate leaves the original row in place, so any row may be duplicated
        row_level = outcome == "quarantine" and defect != "duplicate_row"
        pool = ~used & (expendable if row_level else True)
        candidates = np.flatnonzero(pool)
        if count == 0 or len(candidates) == 0:
            continue
        chosen = rng.choice(candidates, min(count, len(candidates)), replace=False)
        used[chosen] = True
        column = cols.get(field, cols["record_id"])
        if defect == "duplicate_row":
            duplicates.append(frame.iloc[chosen])
            value = np.full(len(chosen), "(copy of the row)", dtype=object)
        elif defect == "dob_out_of_range":
            fmt = mapping.dob_formats[0]
            pick = np.array([dt.date(1850, 6, 15).strftime(fmt), dt.date(2031, 3, 3).strftime(fmt)])
            value = pick[rng.integers(0, 2, len(chosen))]
        else:
            options = _REPLACEMENTS[defect]
            value = options[rng.integers(0, len(options), len(chosen))]
        if defect != "duplicate_row":
            frame.iloc[chosen, frame.columns.get_loc(column)] = value
        raw = frame.iloc[chosen][cols["record_id"]].to_numpy()
        found.append(
            pd.DataFrame(
                {
                    "file": mapping.file,
                    "agency": agency,
                    "record_id": prefix + "-" + pd.Series(raw, dtype=str),
                    "defect": defect,
                    "column": column,
                    "expected": outcome,
                    "value": value,
                }
            )
        )
    if duplicates:
        frame = pd.concat([frame, *duplicates], ignore_index=True)
        frame = frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)
    columns = ["file", "agency", "record_id", "defect", "column", "expected", "value"]
    bad = pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=columns)
    return frame, bad


def implausible_ages(
    frame: pd.DataFrame,
    rows: pd.DataFrame,
    mapping,
    *,
    agency: str,
    prefix: str,
    epoch0: int,
    min_age: float,
    max_age: float,
) -> pd.DataFrame:
    """Rows whose (noisy, but well-formed) DOB gives an age outside ingest's plausible range.

    ``frame`` is the formatted extract aligned with ``rows`` (before :func:`inject`).
    Ordinary noise does this now and then (a one-digit error turning 1998 into 2008); ingest
    keeps such rows with a field issue, so they are listed too, as ``dob_implausible_age``.
    """
    dob = rows["dob"].to_numpy()
    age = (epoch0 + rows["time"].to_numpy() - dob) / 365.25
    odd = (dob >= 0) & ((age < min_age) | (age > max_age))
    column = mapping.columns["dob"]
    return pd.DataFrame(
        {
            "file": mapping.file,
            "agency": agency,
            "record_id": prefix + "-" + frame[mapping.columns["record_id"]].to_numpy()[odd],
            "defect": "dob_implausible_age",
            "column": column,
            "expected": "field_issue",
            "value": frame[column].to_numpy()[odd],
        }
    )
