"""Ingest tables: mentions, events, their versions, quarantine, field issues, runs, tombstones.

Revision ID: 0001
Revises: None

A frozen snapshot of :mod:`ipvi.tables.ingest` (tests/test_db.py checks the two agree).
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_versions",
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("agency", sa.String(length=40), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("case_ref", sa.Text(), nullable=True),
        sa.Column("offense_date", sa.DateTime(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.Column("offense_code", sa.Text(), nullable=True),
        sa.Column("ipv", sa.Boolean(), nullable=True),
        sa.Column("weapon", sa.Boolean(), nullable=True),
        sa.Column("strangulation", sa.Boolean(), nullable=True),
        sa.Column("injury", sa.Boolean(), nullable=True),
        sa.Column("threat_to_kill", sa.Boolean(), nullable=True),
        sa.Column("children_present", sa.Boolean(), nullable=True),
        sa.Column("disposition", sa.String(length=16), nullable=True),
        sa.Column("victim_record_id", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("ingest_run_id", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=32), nullable=False),
        sa.Column("superseded_by_run_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "version", name=op.f("pk_event_versions")),
    )
    op.create_table(
        "events",
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("agency", sa.String(length=40), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("case_ref", sa.Text(), nullable=True),
        sa.Column("offense_date", sa.DateTime(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.Column("offense_code", sa.Text(), nullable=True),
        sa.Column("ipv", sa.Boolean(), nullable=True),
        sa.Column("weapon", sa.Boolean(), nullable=True),
        sa.Column("strangulation", sa.Boolean(), nullable=True),
        sa.Column("injury", sa.Boolean(), nullable=True),
        sa.Column("threat_to_kill", sa.Boolean(), nullable=True),
        sa.Column("children_present", sa.Boolean(), nullable=True),
        sa.Column("disposition", sa.String(length=16), nullable=True),
        sa.Column("victim_record_id", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("ingest_run_id", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_events")),
    )
    op.create_index(op.f("ix_events_agency"), "events", ["agency"], unique=False)
    op.create_index(op.f("ix_events_case_ref"), "events", ["case_ref"], unique=False)
    op.create_table(
        "field_issues",
        sa.Column("record_id", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("field", sa.String(length=40), nullable=False),
        sa.Column("agency", sa.String(length=40), nullable=False),
        sa.Column("problem", sa.String(length=40), nullable=False),
        sa.Column("raw_value", sa.Text(), nullable=True),
        sa.Column("ingest_run_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("record_id", "version", "field", name=op.f("pk_field_issues")),
    )
    op.create_table(
        "ingest_lock",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("process_started", sa.Float(), nullable=False),
        sa.Column("acquired_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_ingest_lock")),
    )
    op.create_table(
        "ingest_runs",
        sa.Column("run_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("source_dir", sa.Text(), nullable=False),
        sa.Column("rows_in", sa.Integer(), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("accepted_with_issues", sa.Integer(), nullable=False),
        sa.Column("quarantined", sa.Integer(), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_ingest_runs")),
    )
    op.create_table(
        "mention_versions",
        sa.Column("record_id", sa.Text(), nullable=False),
        sa.Column("agency", sa.String(length=40), nullable=False),
        sa.Column("agency_person_id", sa.Text(), nullable=True),
        sa.Column("first_name", sa.Text(), nullable=True),
        sa.Column("middle_name", sa.Text(), nullable=True),
        sa.Column("last_name", sa.Text(), nullable=True),
        sa.Column("suffix", sa.Text(), nullable=True),
        sa.Column("dob", sa.Date(), nullable=True),
        sa.Column("dob_raw", sa.Text(), nullable=True),
        sa.Column("sex", sa.String(length=16), nullable=True),
        sa.Column("race", sa.String(length=32), nullable=True),
        sa.Column("ethnicity", sa.String(length=32), nullable=True),
        sa.Column("street", sa.Text(), nullable=True),
        sa.Column("city", sa.Text(), nullable=True),
        sa.Column("zip", sa.String(length=5), nullable=True),
        sa.Column("phone", sa.String(length=10), nullable=True),
        sa.Column("ssn_last4", sa.String(length=4), nullable=True),
        sa.Column("address_confidential", sa.Boolean(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("ingest_run_id", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=32), nullable=False),
        sa.Column("superseded_by_run_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("record_id", "version", name=op.f("pk_mention_versions")),
    )
    op.create_index(
        op.f("ix_mention_versions_event_id"), "mention_versions", ["event_id"], unique=False
    )
    op.create_table(
        "mentions",
        sa.Column("record_id", sa.Text(), nullable=False),
        sa.Column("agency", sa.String(length=40), nullable=False),
        sa.Column("agency_person_id", sa.Text(), nullable=True),
        sa.Column("first_name", sa.Text(), nullable=True),
        sa.Column("middle_name", sa.Text(), nullable=True),
        sa.Column("last_name", sa.Text(), nullable=True),
        sa.Column("suffix", sa.Text(), nullable=True),
        sa.Column("dob", sa.Date(), nullable=True),
        sa.Column("dob_raw", sa.Text(), nullable=True),
        sa.Column("sex", sa.String(length=16), nullable=True),
        sa.Column("race", sa.String(length=32), nullable=True),
        sa.Column("ethnicity", sa.String(length=32), nullable=True),
        sa.Column("street", sa.Text(), nullable=True),
        sa.Column("city", sa.Text(), nullable=True),
        sa.Column("zip", sa.String(length=5), nullable=True),
        sa.Column("phone", sa.String(length=10), nullable=True),
        sa.Column("ssn_last4", sa.String(length=4), nullable=True),
        sa.Column("address_confidential", sa.Boolean(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("ingest_run_id", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("record_id", name=op.f("pk_mentions")),
    )
    op.create_index(op.f("ix_mentions_agency"), "mentions", ["agency"], unique=False)
    op.create_index(op.f("ix_mentions_event_id"), "mentions", ["event_id"], unique=False)
    op.create_table(
        "purge_tombstones",
        sa.Column("tombstone_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("purged_at", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("target_hash", sa.String(length=64), nullable=False),
        sa.Column("record_count", sa.Integer(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("tombstone_id", name=op.f("pk_purge_tombstones")),
    )
    op.create_table(
        "purged_records",
        sa.Column("record_hash", sa.String(length=64), nullable=False),
        sa.Column("tombstone_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("record_hash", name=op.f("pk_purged_records")),
    )
    op.create_table(
        "quarantine",
        sa.Column("quarantine_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("agency", sa.String(length=40), nullable=False),
        sa.Column("source_file", sa.Text(), nullable=False),
        sa.Column("row_number", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.Text(), nullable=True),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("raw_row", sa.JSON(), nullable=False),
        sa.Column("row_hash", sa.String(length=32), nullable=False),
        sa.Column("ingest_run_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("quarantine_id", name=op.f("pk_quarantine")),
    )
    op.create_index(
        op.f("ix_quarantine_agency_row_hash"), "quarantine", ["agency", "row_hash"], unique=True
    )
    op.create_index(op.f("ix_quarantine_record_id"), "quarantine", ["record_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_quarantine_record_id"), table_name="quarantine")
    op.drop_index(op.f("ix_quarantine_agency_row_hash"), table_name="quarantine")
    op.drop_table("quarantine")
    op.drop_table("purged_records")
    op.drop_table("purge_tombstones")
    op.drop_index(op.f("ix_mentions_event_id"), table_name="mentions")
    op.drop_index(op.f("ix_mentions_agency"), table_name="mentions")
    op.drop_table("mentions")
    op.drop_index(op.f("ix_mention_versions_event_id"), table_name="mention_versions")
    op.drop_table("mention_versions")
    op.drop_table("ingest_runs")
    op.drop_table("ingest_lock")
    op.drop_table("field_issues")
    op.drop_index(op.f("ix_events_case_ref"), table_name="events")
    op.drop_index(op.f("ix_events_agency"), table_name="events")
    op.drop_table("events")
    op.drop_table("event_versions")
