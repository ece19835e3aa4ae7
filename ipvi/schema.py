"""Canonical columns and vocabularies shared by every stage.

These are the data contracts of docs/ARCHITECTURE.md written once in code: ingest maps agency
extracts onto them, and every later stage reads them by these names.
"""

from __future__ import annotations

import pandas as pd

# The pandas dtype of text read from an extract and of text written in bulk (ipvi.bulk).
TEXT = pd.StringDtype("pyarrow")

# One row per person named in an agency record.
MENTION_COLUMNS: tuple[str, ...] = (
    "record_id",
    "agency",
    "agency_person_id",
    "first_name",
    "middle_name",
    "last_name",
    "suffix",
    "dob",
    "dob_raw",
    "sex",
    "race",
    "ethnicity",
    "street",
    "city",
    "zip",
    "phone",
    "ssn_last4",
    "address_confidential",
    "event_id",
    "role",
)

# One row per agency event; several mentions (offender, victim) may share one event.
EVENT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "agency",
    "event_type",
    "case_ref",
    "offense_date",
    "recorded_at",
    "offense_code",
    "ipv",
    "weapon",
    "strangulation",
    "injury",
    "threat_to_kill",
    "children_present",
    "disposition",
    "victim_record_id",
)

EVENT_TYPES: frozenset[str] = frozenset(
    {
        "incident",
        "arrest",
        "charge",
        "disposition",
        "protective_order",
        "order_violation",
        "probation_start",
        "probation_violation",
        "custody_start",
        "custody_end",
        "notification",
    }
)

ROLES: frozenset[str] = frozenset(
    {"suspect", "arrestee", "defendant", "respondent", "probationer", "victim"}
)
OFFENDER_ROLES: frozenset[str] = ROLES - {"victim"}

SEXES: frozenset[str] = frozenset({"female", "male", "unknown"})
RACES: frozenset[str] = frozenset(
    {"white", "black", "asian", "native_american", "other", "unknown"}
)
ETHNICITIES: frozenset[str] = frozenset({"hispanic", "non_hispanic", "unknown"})
DISPOSITIONS: frozenset[str] = frozenset({"pending", "convicted", "dismissed", "acquitted"})

# Identifiers that must never reach logs, error messages or MLflow parameters.
PERSONAL_FIELDS: frozenset[str] = frozenset(
    {
        "first_name",
        "middle_name",
        "last_name",
        "suffix",
        "full_name",
        "dob",
        "dob_raw",
        "street",
        "city",
        "zip",
        "phone",
        "ssn_last4",
    }
)

# Fields that only the fairness audit may read; no model or feature ever takes them.
PROTECTED_FIELDS: frozenset[str] = frozenset({"race", "ethnicity"})

# Boolean event markers carried by the event contract.
EVENT_FLAGS: tuple[str, ...] = (
    "ipv",
    "weapon",
    "strangulation",
    "injury",
    "threat_to_kill",
    "children_present",
)
