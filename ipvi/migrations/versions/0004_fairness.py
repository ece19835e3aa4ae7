"""Tables of the fairness stage: audits, promotions.

Revision ID: 0004
Revises: 0003

A frozen snapshot of :mod:`ipvi.tables.fairness`.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audits",
        sa.Column("audit_id", sa.String(length=32), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("data_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("policy_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("audit_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("audit_id", name=op.f("pk_audits")),
    )
    op.create_index(op.f("ix_audits_model_version"), "audits", ["model_version"])
    op.create_table(
        "promotions",
        sa.Column("promotion_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("audit_id", sa.String(length=32), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("previous_champion", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("promotion_id", name=op.f("pk_promotions")),
    )
    op.create_index(op.f("ix_promotions_model_version"), "promotions", ["model_version"])


def downgrade() -> None:
    op.drop_index(op.f("ix_promotions_model_version"), table_name="promotions")
    op.drop_table("promotions")
    op.drop_index(op.f("ix_audits_model_version"), table_name="audits")
    op.drop_table("audits")
