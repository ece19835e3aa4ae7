"""Tables of the serving stage: API keys, the hash-chained audit log, staff decisions, and the
sessions of the review pages (migration ``0006``).

Audit-log and decision rows hold pseudonymous person ids only, never names, dates of birth or
addresses, and are exempt from purge (a purge appends a chained tombstone instead).
"""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, DateTime, Integer, String, Table, Text

from ipvi.tables import metadata

api_keys = Table(
    "api_keys",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("role", String(20), nullable=False),
    # SHA-256 of the key; the key itself is shown once, when created, and never stored.
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime, nullable=False),
    Column("revoked_at", DateTime, nullable=True),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    # Written by the service before the row reaches the database: a re-flushed spool is a no-op.
    Column("entry_id", String(36), nullable=False, unique=True),
    Column("kind", String(20), nullable=False),
    Column("event_time", DateTime, nullable=False),
    Column("key_name", String(100), nullable=True),
    Column("endpoint", String(200), nullable=False),
    Column("person_ids", JSON, nullable=False),
    Column("model_version", String(50), nullable=True),
    Column("status_code", Integer, nullable=True),
    Column("outcome", String(200), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("row_hash", String(64), nullable=False),
)

# One row (id 1): the chain's last sequence number and hash. Updating it first serialises
# appends from every worker process on both SQLite and PostgreSQL.
audit_chain_head = Table(
    "audit_chain_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    Column("row_hash", String(64), nullable=False),
)

decisions = Table(
    "decisions",
    metadata,
    Column("decision_id", String(100), primary_key=True),
    Column("person_id", String(100), nullable=False, index=True),
    Column("action", String(50), nullable=False),
    Column("tier_decision", String(20), nullable=False),
    Column("tier", String(1), nullable=True),
    Column("reason", Text, nullable=True),
    Column("advocate_contacted_before_notification", Boolean, nullable=True),
    Column("warnings", JSON, nullable=False),
    Column("key_name", String(100), nullable=False),
    Column("decided_at", DateTime, nullable=False),
    Column("recorded_at", DateTime, nullable=False),
    # SHA-256 of the request: a retry with the same body is a no-op, a different body a conflict.
    Column("payload_hash", String(64), nullable=False),
)

# Review page sessions: the SHA-256 of the session cookie, the key it was opened with and the
# CSRF token of its forms (serving.review_auth).
review_sessions = Table(
    "review_sessions",
    metadata,
    Column("session_hash", String(64), primary_key=True),
    Column("key_name", String(100), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
)
