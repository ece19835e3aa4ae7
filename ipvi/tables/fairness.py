"""Tables of the fairness stage (migration ``0004``).

``audits`` keeps every model-version audit: its verdict, the fingerprint of the data it saw and
the hash of the policy it applied (``ipvi promote`` checks both still match), and the full audit
JSON. ``promotions`` records every ``ipvi promote`` attempt: promoted, refused, or forced with
the reason a person gave. ``reaudits`` keeps every re-audit on matured outcomes of issued
scores (``ipvi audit --issued``, migration ``0009``): a failed one blocks promotion and puts a
warning on every score the version answers until a later one passes (:mod:`ipvi.reaudits`).
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, DateTime, Index, Integer, String, Table, Text

from ipvi.tables import metadata

audits = Table(
    "audits",
    metadata,
    Column("audit_id", String(32), primary_key=True),
    Column("model_version", String(64), index=True),
    Column("data_fingerprint", String(64), nullable=False),
    Column("policy_hash", String(64), nullable=False),
    Column("status", String(32)),
    Column("reasons", JSON, nullable=False),
    Column("audit_json", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

promotions = Table(
    "promotions",
    metadata,
    Column("promotion_id", Integer, primary_key=True, autoincrement=True),
    Column("model_version", String(64), nullable=False, index=True),
    Column("audit_id", String(32)),
    Column("outcome", String(16), nullable=False),
    Column("reason", Text),
    Column("previous_champion", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

reaudits = Table(
    "reaudits",
    metadata,
    Column("reaudit_id", String(32), primary_key=True),  # the audit id of its audit JSON
    Column("model_name", String(100), nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("since", DateTime, nullable=False),  # the first issue date audited
    Column("as_of", DateTime, nullable=False),  # the extract date: outcomes known up to it
    Column("status", String(32), nullable=False),
    Column("reasons", JSON, nullable=False),
    Column("n_rows", Integer, nullable=False),
    Column("audit_json", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_reaudits_model_version_created_at", "model_version", "created_at"),
)
