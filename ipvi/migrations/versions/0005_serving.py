"""Tables of the serving stage: api keys, audit log, decisions.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_api_keys"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("entry_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("event_time", sa.DateTime(), nullable=False),
        sa.Column("key_name", sa.String(100), nullable=True),
        sa.Column("endpoint", sa.String(200), nullable=False),
        sa.Column("person_ids", sa.JSON(), nullable=False),
        sa.Column("model_version", sa.String(50), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(200), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("row_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_log"),
        sa.UniqueConstraint("entry_id", name="uq_audit_log_entry_id"),
    )
    head = op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("row_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_chain_head"),
    )
    # The chain starts from a fixed genesis hash; appenders lock and advance this one row.
    op.bulk_insert(head, [{"id": 1, "seq": 0, "row_hash": "0" * 64}])
    op.create_table(
        "decisions",
        sa.Column("decision_id", sa.String(100), nullable=False),
        sa.Column("person_id", sa.String(100), nullable=False),
        sa.Column("action", sa.String(50), nullable=False),
        sa.Column("tier_decision", sa.String(20), nullable=False),
        sa.Column("tier", sa.String(1), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("advocate_contacted_before_notification", sa.Boolean(), nullable=True),
        sa.Column("warnings", sa.JSON(), nullable=False),
        sa.Column("key_name", sa.String(100), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.Column("payload_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("decision_id", name="pk_decisions"),
    )
    op.create_index("ix_decisions_person_id", "decisions", ["person_id"])


def downgrade() -> None:
    op.drop_index("ix_decisions_person_id", table_name="decisions")
    op.drop_table("decisions")
    op.drop_table("audit_chain_head")
    op.drop_table("audit_log")
    op.drop_table("api_keys")
