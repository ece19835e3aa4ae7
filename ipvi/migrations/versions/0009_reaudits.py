"""Re-audits of issued scores on their matured outcomes (``ipvi audit --issued``).

``reaudits`` keeps each one with its verdict and audit JSON; the latest pass or fail of the
served version is what ``ipvi promote`` and the service's score warnings read.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reaudits",
        sa.Column("reaudit_id", sa.String(32), nullable=False),
        sa.Column("model_name", sa.String(100), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("since", sa.DateTime(), nullable=False),
        sa.Column("as_of", sa.DateTime(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("n_rows", sa.Integer(), nullable=False),
        sa.Column("audit_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("reaudit_id", name="pk_reaudits"),
    )
    op.create_index(
        "ix_reaudits_model_version_created_at", "reaudits", ["model_version", "created_at"]
    )


def downgrade() -> None:
    op.drop_table("reaudits")
