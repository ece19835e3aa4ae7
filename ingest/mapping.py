"""Map one agency extract onto canonical mentions and events, deciding what is quarantined.

The mapping is read generically from :class:`~ipvi.config.AgencyMapping`: ``columns`` say where a
canonical field comes from, ``values`` recode agency codes, ``constants`` fill a field for every
row, ``date_formats`` / ``dob_formats`` parse dates, ``full_name_format`` splits a one-column name,
``true_values`` / ``false_values`` read flags. Everything is vectorised over the whole file.

Rows versus fields: a row is quarantined only when what identifies it (record id, event id, event
type, the event dates) is unusable, when it duplicates another row, or when it was purged before.
(The agency is the mapping's own name, so no single row can get it wrong.) Any other bad field
(DOB, SSN-4, phone, zip, a code or flag) is nulled, its raw text kept as a field issue, and the
row accepted, because linkage needs those rows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ingest import fields
from ipvi.config import AgencyMapping, IngestConfig
from ipvi.errors import ConfigError
from ipvi.purge import PurgedRecords
from ipvi.schema import (
    DISPOSITIONS,
    ETHNICITIES,
    EVENT_COLUMNS,
    EVENT_FLAGS,
    EVENT_TYPES,
    MENTION_COLUMNS,
    RACES,
    ROLES,
    SEXES,
)

# Closed vocabularies: a value outside them is an unknown code.
VOCABULARIES: dict[str, frozenset[str]] = {
    "event_type": EVENT_TYPES,
    "role": ROLES,
    "sex": SEXES,
    "race": RACES,
    "ethnicity": ETHNICITIES,
    "disposition": DISPOSITIONS,
}
FLAG_FIELDS: tuple[str, ...] = (*EVENT_FLAGS, "address_confidential")
TEXT_FIELDS: tuple[str, ...] = (
    "agency_person_id",
    "first_name",
    "middle_name",
    "last_name",
    "suffix",
    "street",
    "city",
    "case_ref",
    "offense_code",
)
NAME_PARTS: tuple[str, ...] = ("first_name", "middle_name", "last_name", "suffix")
NAME_SUFFIXES: tuple[str, ...] = ("JR", "SR", "II", "III", "IV")

# Quarantine reasons, in order of precedence: a row is filed under the first that applies.
MALFORMED_ROW = "malformed_row"
RECORD_PURGED = "record_purged"
ROW_CHECKS: tuple[tuple[str, str, str], ...] = (
    # (reason, canonical field, field problem)
    ("record_id_missing", "record_id", fields.MISSING),
    ("event_id_missing", "event_id", fields.MISSING),
    ("event_type_missing", "event_type", fields.MISSING),
    ("event_type_unknown", "event_type", fields.UNKNOWN_CODE),
    ("offense_date_missing", "offense_date", fields.MISSING),
    ("offense_date_unparseable", "offense_date", fields.UNPARSEABLE),
    ("recorded_at_missing", "recorded_at", fields.MISSING),
    ("recorded_at_unparseable", "recorded_at", fields.UNPARSEABLE),
)
DUPLICATE_ROW = "duplicate_row"
RECORD_ID_CONFLICT = "record_id_conflict"
QUARANTINE_REASONS: tuple[str, ...] = (
    MALFORMED_ROW,
    *(reason for reason, _, _ in ROW_CHECKS),
    DUPLICATE_ROW,
    RECORD_ID_CONFLICT,
    RECORD_PURGED,
)


@dataclass(frozen=True)
class MappedExtract:
    """One extract mapped: what to store, and how every input row was decided.

    Attributes
    ----------
    file : str
        The extract's file name.
    mentions : DataFrame
        Accepted rows: :data:`~ipvi.schema.MENTION_COLUMNS` plus ``content_hash``.
    events : DataFrame
        One row per event of the accepted rows: :data:`~ipvi.schema.EVENT_COLUMNS` plus
        ``content_hash``.
    issues : DataFrame
        Field issues of accepted rows: ``record_id, field, problem, raw_value``.
    quarantine : DataFrame
        Quarantined rows to store: ``row_number, record_id, reason, detail, raw_row, row_hash``.
    purged : int
        Rows of records purged earlier: counted as quarantined, never stored again.
    rows_in : int
        Every data row of the file, malformed ones included.
    """

    file: str
    mentions: pd.DataFrame
    events: pd.DataFrame
    issues: pd.DataFrame
    quarantine: pd.DataFrame
    purged: int
    rows_in: int

    @property
    def accepted(self) -> int:
        return len(self.mentions)

    @property
    def accepted_with_issues(self) -> int:
        return int(self.issues["record_id"].nunique())

    @property
    def quarantined(self) -> int:
        return len(self.quarantine) + self.purged

    def by_reason(self) -> dict[str, int]:
        counts = self.quarantine["reason"].value_counts().to_dict()
        if self.purged:
            counts[RECORD_PURGED] = self.purged
        return {str(reason): int(count) for reason, count in sorted(counts.items())}


def required_columns(mapping: AgencyMapping) -> list[str]:
    """The extract columns the mapping reads, in a stable order without repeats."""
    return list(dict.fromkeys(mapping.columns.values()))


def check_mapping(agency: str, mapping: AgencyMapping) -> None:
    """Reject a mapping that cannot work, naming the config key."""
    key = f"ingest.agencies.{agency}"
    both = sorted(set(mapping.columns) & set(mapping.constants))
    if both:
        raise ConfigError(f"config key '{key}': {', '.join(both)} both a column and a constant")
    for field, value in mapping.constants.items():
        vocabulary = VOCABULARIES.get(field)
        if vocabulary is not None and value not in vocabulary:
            raise ConfigError(
                f"config key '{key}.constants.{field}': '{value}' is not one of "
                f"{', '.join(sorted(vocabulary))}"
            )
    for field, recode in mapping.values.items():
        vocabulary = VOCABULARIES.get(field)
        wrong = sorted(set(recode.values()) - vocabulary) if vocabulary else []
        if wrong:
            raise ConfigError(f"config key '{key}.values.{field}': unknown value(s) {wrong}")
    if "full_name" in mapping.columns and mapping.full_name_format is None:
        raise ConfigError(f"config key '{key}.full_name_format': needed to split full_name")
    for field in ("record_id", "event_id", "event_type", "offense_date"):
        if field not in mapping.columns and field not in mapping.constants:
            raise ConfigError(f"config key '{key}.columns.{field}': required")


SUFFIX_PATTERN = (
    r"(?i)^(?P<rest>.*?)[ ,]+(?P<suffix>" + "|".join(NAME_SUFFIXES) + r")\.?(?P<tail>,.*)?$"
)
COMMA_PATTERN = r"^(?P<last_name>[^,]*),\s*(?P<first_name>\S*)\s*(?P<middle_name>.*)$"
PLAIN_PATTERN = r"^(?:(?P<first_name>\S+)\s+)?(?:(?P<middle_name>.+)\s+)?(?P<last_name>\S+)$"


def _extract(values: pd.Series, pattern: str) -> dict[str, pd.Series]:
    """Named groups of a regular expression, vectorised in Arrow (``<NA>`` where no match)."""
    matched = pc.extract_regex(pa.array(values.astype(fields.TEXT).array), pattern)
    names = [matched.type.field(i).name for i in range(matched.type.num_fields)]
    return {
        name: pd.Series(
            pd.arrays.ArrowStringArray(pc.struct_field(matched, [i])), index=values.index
        )
        for i, name in enumerate(names)
    }


def split_full_name(raw: pd.Series, name_format: str) -> dict[str, pd.Series]:
    """Split one name column into first, middle, last name and suffix.

    ``last_comma_first`` reads "LAST [SUFFIX], FIRST [MIDDLE...] [SUFFIX]" (a surname may hold
    several words, as Hispanic double surnames do); ``first_last`` reads "FIRST [MIDDLE...] LAST
    [SUFFIX]", where only the last word can be told to be the surname. A ``last_comma_first``
    name without a comma is read as ``first_last``.
    """
    name = fields.stripped(raw).str.replace(r"\s+", " ", regex=True)
    found = _extract(name, SUFFIX_PATTERN)
    has_suffix = fields.mask(found["suffix"].notna())
    name = name.mask(has_suffix, found["rest"] + found["tail"].fillna(""))
    parts = _extract(name, PLAIN_PATTERN)
    if name_format == "last_comma_first":
        comma = _extract(name, COMMA_PATTERN)
        use_comma = fields.mask(comma["last_name"].notna())
        parts = {part: comma[part].where(use_comma, parts[part]) for part in parts}
    parts["suffix"] = found["suffix"].str.upper()
    return {part: fields.text(parts[part]) for part in NAME_PARTS}


def row_hashes(frame: pd.DataFrame) -> pd.Series:
    """A 64-bit hash of each row's content: equal content gives an equal hash.

    The row is joined into one text in Arrow (missing values marked, so a missing value and an
    empty one differ) and hashed with pandas' SipHash: faster than hashing column by column.
    """
    table = pa.Table.from_pandas(frame, preserve_index=False)
    columns = [pc.fill_null(pc.cast(column, pa.string()), "\x00") for column in table.columns]
    joined = pc.binary_join_element_wise(*columns, "\x1f").to_numpy(zero_copy_only=False)
    return pd.Series(pd.util.hash_array(joined, categorize=False), index=frame.index)


def content_hash(frame: pd.DataFrame) -> pd.Series:
    """:func:`row_hashes` as 16 hex digits, the form stored in ``content_hash`` columns."""
    return row_hashes(frame).map("{:016x}".format)


class _Canonical:
    """The canonical columns of one extract, built field by field, with each field's problems."""

    def __init__(self, raw: pd.DataFrame, mapping: AgencyMapping) -> None:
        self.raw = raw
        self.mapping = mapping
        self.values: dict[str, pd.Series] = {}
        self.problems: dict[str, pd.Series] = {}

    def source(self, field: str) -> pd.Series:
        return self.raw[self.mapping.columns[field]]

    def put(self, field: str, checked: fields.Checked, *, required: bool = False) -> None:
        """Store a checked field; a ``required`` field's missing values are problems too."""
        problems = checked.problems
        if required:
            missing = fields.mask(checked.values.isna()) & fields.mask(problems.isna())
            problems = problems.mask(missing, fields.MISSING)
        self.values[field] = checked.values
        if fields.mask(problems.notna()).any():
            self.problems[field] = problems

    def identifiers(self, prefix: str) -> None:
        for field in ("record_id", "event_id", "victim_record_id"):
            if field in self.mapping.columns:
                value = prefix + fields.text(self.source(field))
                no_problem = pd.Series(pd.NA, index=self.raw.index, dtype="string")
                self.put(
                    field, fields.Checked(value, no_problem), required=field != "victim_record_id"
                )

    def dates(self, config: IngestConfig) -> None:
        formats = self.mapping.date_formats
        self.put(
            "offense_date",
            fields.parse_datetimes(self.source("offense_date"), formats),
            required=True,
        )
        if "recorded_at" in self.mapping.columns:
            self.put(
                "recorded_at",
                fields.parse_datetimes(self.source("recorded_at"), formats),
                required=True,
            )
        else:  # an agency without an entry date: its records are known when they happen
            self.values["recorded_at"] = self.values["offense_date"]
        if "dob" in self.mapping.columns:
            self.values["dob_raw"] = fields.text(self.source("dob"))
            checked = fields.dob(
                self.source("dob"),
                self.mapping.dob_formats,
                self.values["offense_date"],
                min_year=config.dob_min_year,
                min_age=config.min_age_years,
                max_age=config.max_age_years,
            )
            self.put("dob", checked)

    def coded(self) -> None:
        mapping = self.mapping
        for field, vocabulary in VOCABULARIES.items():
            if field in mapping.columns:
                recode = mapping.values.get(field, {})
                checked = fields.code(self.source(field), recode, vocabulary)
                self.put(field, checked, required=field == "event_type")
        for field in FLAG_FIELDS:
            if field in mapping.columns:
                checked = fields.flag(self.source(field), mapping.true_values, mapping.false_values)
                self.put(field, checked)

    def personal(self) -> None:
        mapping = self.mapping
        for field in TEXT_FIELDS:
            if field in mapping.columns:
                self.values[field] = fields.text(self.source(field))
        if "full_name" in mapping.columns:
            self.values.update(split_full_name(self.source("full_name"), mapping.full_name_format))
        validators = {"ssn_last4": fields.ssn_last4, "phone": fields.phone, "zip": fields.zip_code}
        for field, validator in validators.items():
            if field in mapping.columns:
                self.put(field, validator(self.source(field)))

    def constants(self, agency: str) -> None:
        for field, value in {**self.mapping.constants, "agency": agency}.items():
            dtype = "boolean" if isinstance(value, bool) else "string"
            self.values[field] = pd.Series(value, index=self.raw.index, dtype=dtype)

    def frame(self) -> pd.DataFrame:
        """All canonical mention and event columns; unmapped ones are null."""
        index = self.raw.index
        confidential = self.values.get("address_confidential")
        if confidential is None:
            confidential = pd.Series(False, index=index, dtype="boolean")
        elif "address_confidential" in self.problems:
            # An unreadable confidentiality flag protects the address rather than exposing it.
            confidential = confidential.fillna(True)
        self.values["address_confidential"] = confidential.fillna(False)
        columns = dict.fromkeys((*MENTION_COLUMNS, *EVENT_COLUMNS))
        out = {}
        for column in columns:
            value = self.values.get(column)
            if value is None:
                dtype = "boolean" if column in EVENT_FLAGS else "string"
                if column in {"dob", "offense_date", "recorded_at"}:
                    dtype = "datetime64[ns]"
                value = pd.Series(
                    pd.NA if dtype != "datetime64[ns]" else pd.NaT, index=index, dtype=dtype
                )
            out[column] = value
        return pd.DataFrame(out, index=index)


def _first_reason(problems: dict[str, pd.Series], index: pd.Index) -> tuple[pd.Series, pd.Series]:
    """Per row, the first quarantine reason that applies, and every row-level problem as text."""
    reason = pd.Series(pd.NA, index=index, dtype="string")
    details = []
    for name, field, problem in reversed(ROW_CHECKS):
        found = problems.get(field)
        if found is None:
            continue
        hit = fields.mask(found == problem)
        reason[hit] = name
        details.append(pd.Series(np.where(hit, f"{field}: {problem}", None), index=index))
    return reason, _join(details[::-1], index)


def _join(parts: list[pd.Series], index: pd.Index) -> pd.Series:
    if not parts:
        return pd.Series(pd.NA, index=index, dtype="string")
    stacked = pd.concat(parts, axis=1).stack()
    return stacked.groupby(level=0).agg("; ".join).reindex(index).astype("string")


def _field_issues(
    canonical: _Canonical, accepted: np.ndarray, record_id: pd.Series
) -> pd.DataFrame:
    row_fields = {field for _, field, _ in ROW_CHECKS}
    frames = []
    for field, problems in canonical.problems.items():
        if field in row_fields:
            continue
        hit = fields.mask(problems.notna()) & accepted
        if not hit.any():
            continue
        raw_value = fields.stripped(canonical.source(field))[hit]
        frames.append(
            pd.DataFrame(
                {
                    "record_id": record_id[hit],
                    "field": field,
                    "problem": problems[hit],
                    "raw_value": raw_value,
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=["record_id", "field", "problem", "raw_value"])
    return pd.concat(frames, ignore_index=True)


def map_extract(
    raw: pd.DataFrame,
    *,
    agency: str,
    mapping: AgencyMapping,
    config: IngestConfig,
    row_numbers: pd.Series,
    malformed: pd.DataFrame,
    purged: PurgedRecords = PurgedRecords(),
) -> MappedExtract:
    """Map one parsed extract onto canonical mentions and events.

    Parameters
    ----------
    raw : DataFrame
        Every column of the extract as text (empty string = missing).
    agency, mapping, config
        The agency name, its mapping and the ingest settings (DOB plausibility).
    row_numbers : Series
        The line of each row in its file (header = line 1), for the quarantine table.
    malformed : DataFrame
        Lines the CSV reader could not split into the header's columns: ``row_number, text``.
    purged : PurgedRecords
        Every purged record id's pseudonym: such rows are never stored again.

    Returns
    -------
    MappedExtract
        What to store; every input row is either accepted or quarantined.
    """
    check_mapping(agency, mapping)
    canonical = _Canonical(raw, mapping)
    canonical.identifiers(f"{mapping.record_prefix}-")
    canonical.dates(config)
    canonical.coded()
    canonical.personal()
    canonical.constants(agency)
    table = canonical.frame()
    index = raw.index
    record_id = table["record_id"]

    reason, detail = _first_reason(canonical.problems, index)
    is_purged = np.zeros(len(raw), dtype=bool)
    if purged.hashes:
        known = fields.mask(record_id.notna())
        is_purged[known] = purged.contains(list(record_id[known]))

    raw_hash = row_hashes(raw)
    usable = fields.mask(reason.isna()) & ~is_purged
    candidates = pd.DataFrame({"record_id": record_id, "raw_hash": raw_hash})[usable]
    duplicate = candidates.duplicated(keep="first")
    conflict = ~duplicate & candidates.loc[~duplicate, "record_id"].duplicated(keep=False).reindex(
        candidates.index, fill_value=False
    )
    reason[duplicate[duplicate].index] = DUPLICATE_ROW
    detail[duplicate[duplicate].index] = "row: repeats an earlier row of the file"
    reason[conflict[conflict].index] = RECORD_ID_CONFLICT
    detail[conflict[conflict].index] = "record_id: on rows with different content"
    accepted = fields.mask(reason.isna()) & ~is_purged

    quarantined = fields.mask(reason.notna()) & ~is_purged
    occurrence = raw_hash.groupby(raw_hash).cumcount()
    quarantine = pd.DataFrame(
        {
            "row_number": row_numbers[quarantined].astype(int),
            "record_id": record_id[quarantined],
            "reason": reason[quarantined],
            "detail": detail[quarantined],
            "raw_row": raw[quarantined].to_dict(orient="records"),
            "row_hash": [
                hashlib.blake2b(f"{h:016x}:{k}".encode(), digest_size=16).hexdigest()
                for h, k in zip(raw_hash[quarantined], occurrence[quarantined], strict=True)
            ],
        }
    )
    if len(malformed):
        quarantine = pd.concat([quarantine, _malformed_rows(malformed)], ignore_index=True)

    mentions = table.loc[accepted, list(MENTION_COLUMNS)].reset_index(drop=True)
    mentions["content_hash"] = content_hash(mentions).to_numpy()
    events = _events(table.loc[accepted, list(EVENT_COLUMNS)])
    issues = _field_issues(canonical, accepted, record_id)
    result = MappedExtract(
        file=mapping.file,
        mentions=mentions,
        events=events,
        issues=issues,
        quarantine=quarantine.reset_index(drop=True),
        purged=int(is_purged.sum()),
        rows_in=len(raw) + len(malformed),
    )
    if result.rows_in != result.accepted + result.quarantined:  # the ingest invariant
        raise RuntimeError(f"{agency}: rows in != accepted + quarantined")
    return result


def _malformed_rows(malformed: pd.DataFrame) -> pd.DataFrame:
    text = malformed["text"].astype(str)
    occurrence = text.groupby(text).cumcount()
    return pd.DataFrame(
        {
            "row_number": malformed["row_number"].astype(int),
            "record_id": pd.Series(pd.NA, index=malformed.index, dtype="string"),
            "reason": MALFORMED_ROW,
            "detail": "row: wrong number of columns",
            "raw_row": [{"line": line} for line in text],
            "row_hash": [
                hashlib.blake2b(f"{line}:{k}".encode(), digest_size=16).hexdigest()
                for line, k in zip(text, occurrence, strict=True)
            ],
        }
    )


def _events(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per event: the first non-null value of each column among its mentions.

    The offender's and the victim's rows of one incident share the event; a victim row may
    leave, say, the victim record id empty, so values are merged rather than one row chosen.
    """
    repeated = fields.mask(rows["event_id"].duplicated(keep=False))
    single = rows[~repeated]
    merged = rows[repeated].groupby("event_id", sort=False, as_index=False).first()
    events = pd.concat([single, merged[single.columns]], ignore_index=True)
    events["content_hash"] = content_hash(events).to_numpy()
    return events
