"""Tables of the ingest stage (migration ``0001``).

``mentions`` and ``events`` hold the CURRENT version of each canonical mention and event (the
columns of :data:`ipvi.schema.MENTION_COLUMNS` and :data:`ipvi.schema.EVENT_COLUMNS`);
``mention_versions`` and ``event_versions`` keep every superseded version, so a re-extract that
changes a record never loses what the registry knew before. ``quarantine`` keeps unusable rows
with their reason, ``field_issues`` the bad fields of accepted rows, ``ingest_runs`` one row per
``ipvi ingest``, ``ingest_lock`` the lock against a concurrent ingest (SQLite; PostgreSQL uses an
advisory lock), and ``purge_tombstones`` / ``purged_records`` what ``ipvi purge`` removed, without
identifiers.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from ipvi.tables import metadata

# Identifiers and codes copied from extracts are Text: an agency's id scheme has no fixed
# length, and PostgreSQL would reject a value longer than a VARCHAR limit. Columns holding
# validated or canonical values (zip, phone, codes) keep a length.


def _mention_columns(history: bool) -> list[Column]:
    """Mention columns; in the history table ``version`` is part of the key."""
    return [
        Column("record_id", Text, primary_key=True),
        Column("agency", String(40), nullable=False),
        Column("agency_person_id", Text),
        Column("first_name", Text),
        Column("middle_name", Text),
        Column("last_name", Text),
        Column("suffix", Text),
        Column("dob", Date),
        Column("dob_raw", Text),
        Column("sex", String(16)),
        Column("race", String(32)),
        Column("ethnicity", String(32)),
        Column("street", Text),
        Column("city", Text),
        Column("zip", String(5)),
        Column("phone", String(10)),
        Column("ssn_last4", String(4)),
        Column("address_confidential", Boolean, nullable=False),
        Column("event_id", Text, nullable=False),
        Column("role", String(16)),
        Column("version", Integer, nullable=False, primary_key=history),
        Column("ingest_run_id", Integer, nullable=False),
        Column("content_hash", String(32), nullable=False),
    ]


def _event_columns(history: bool) -> list[Column]:
    """Event columns; in the history table ``version`` is part of the key."""
    return [
        Column("event_id", Text, primary_key=True),
        Column("agency", String(40), nullable=False),
        Column("event_type", String(32), nullable=False),
        Column("case_ref", Text),
        Column("offense_date", DateTime, nullable=False),
        Column("recorded_at", DateTime, nullable=False),
        Column("offense_code", Text),
        Column("ipv", Boolean),
        Column("weapon", Boolean),
        Column("strangulation", Boolean),
        Column("injury", Boolean),
        Column("threat_to_kill", Boolean),
        Column("children_present", Boolean),
        Column("disposition", String(16)),
        Column("victim_record_id", Text),
        Column("version", Integer, nullable=False, primary_key=history),
        Column("ingest_run_id", Integer, nullable=False),
        Column("content_hash", String(32), nullable=False),
    ]


mentions = Table(
    "mentions",
    metadata,
    *_mention_columns(history=False),
    Index(None, "event_id"),
    Index(None, "agency"),
)

mention_versions = Table(
    "mention_versions",
    metadata,
    *_mention_columns(history=True),
    Column("superseded_by_run_id", Integer, nullable=False),
    Index(None, "event_id"),
)

events = Table(
    "events",
    metadata,
    *_event_columns(history=False),
    Index(None, "agency"),
    Index(None, "case_ref"),
)

event_versions = Table(
    "event_versions",
    metadata,
    *_event_columns(history=True),
    Column("superseded_by_run_id", Integer, nullable=False),
)

field_issues = Table(
    "field_issues",
    metadata,
    Column("record_id", Text, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("field", String(40), primary_key=True),
    Column("agency", String(40), nullable=False),
    Column("problem", String(40), nullable=False),
    Column("raw_value", Text),
    Column("ingest_run_id", Integer, nullable=False),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("quarantine_id", Integer, primary_key=True, autoincrement=True),
    Column("agency", String(40), nullable=False),
    Column("source_file", Text, nullable=False),
    Column("row_number", Integer, nullable=False),
    Column("record_id", Text),
    Column("reason", String(40), nullable=False),
    Column("detail", Text, nullable=False),
    Column("raw_row", JSON, nullable=False),
    Column("row_hash", String(32), nullable=False),
    Column("ingest_run_id", Integer, nullable=False),
    Index(None, "agency", "row_hash", unique=True),
    Index(None, "record_id"),
)

ingest_runs = Table(
    "ingest_runs",
    metadata,
    Column("run_id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    Column("status", String(16), nullable=False),
    Column("source_dir", Text, nullable=False),
    Column("rows_in", Integer, nullable=False),
    Column("accepted", Integer, nullable=False),
    Column("accepted_with_issues", Integer, nullable=False),
    Column("quarantined", Integer, nullable=False),
    Column("files", JSON, nullable=False),
    Column("error", Text),
)

ingest_lock = Table(
    "ingest_lock",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("run_id", Integer),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("process_started", Float, nullable=False),
    Column("acquired_at", DateTime, nullable=False),
)

purge_tombstones = Table(
    "purge_tombstones",
    metadata,
    Column("tombstone_id", Integer, primary_key=True, autoincrement=True),
    Column("purged_at", DateTime, nullable=False),
    Column("reason", Text, nullable=False),
    Column("target_hash", String(64), nullable=False),
    Column("record_count", Integer, nullable=False),
    Column("counts", JSON, nullable=False),
)

purged_records = Table(
    "purged_records",
    metadata,
    Column("record_hash", String(64), primary_key=True),
    Column("tombstone_id", Integer, nullable=False),
)
