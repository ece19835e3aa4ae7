"""Tables of the fairness stage (migration ``0004``).

``audits`` keeps every model-version audit: its verdict, the fingerprint of the data it saw and
the hash of the policy it applied (``ipvi promote`` checks both still match), and the full audit
JSON. ``promotions`` records every ``ipvi promote`` attempt: promoted, refused, or forced with
the reason a person gave.
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, DateTime, Integer, String, Table, Text

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
