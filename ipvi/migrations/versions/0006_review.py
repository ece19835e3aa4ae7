"""Clerical review in the browser: notes, queues, the accuracy sample, leases and sessions.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ID = 64


def upgrade() -> None:
    with op.batch_alter_table("review_pairs") as batch:
        batch.add_column(sa.Column("note", sa.Text, nullable=True))
        batch.add_column(
            sa.Column("queue", sa.String(16), nullable=False, server_default="priority")
        )
    # The queue's order (ipvi.tables.linkage.REVIEW_QUEUE_ORDER), as an index it can walk.
    op.create_index(
        "ix_review_pairs_queue_order",
        "review_pairs",
        [
            "status",
            "queue",
            sa.text("(priority IS NULL)"),
            sa.text("priority DESC"),
            sa.text("abs(match_probability - 0.5)"),
            "pair_id",
        ],
    )
    op.create_table(
        "review_sample",
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("pair_id", sa.String(40), nullable=False),
        sa.Column("stratum", sa.String(40), nullable=False),
        sa.Column("linked", sa.Boolean, nullable=False),
        sa.Column("match_probability", sa.Float, nullable=True),
        sa.Column("draw", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "pair_id", name="pk_review_sample"),
    )
    op.create_table(
        "review_leases",
        sa.Column("pair_id", sa.String(40), nullable=False),
        sa.Column("holder", sa.String(100), nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
        sa.Column("skipped", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("pair_id", name="pk_review_leases"),
    )
    op.create_table(
        "review_sessions",
        sa.Column("session_hash", sa.String(64), nullable=False),
        sa.Column("key_name", sa.String(100), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("session_hash", name="pk_review_sessions"),
    )


def downgrade() -> None:
    op.drop_table("review_sessions")
    op.drop_table("review_leases")
    op.drop_table("review_sample")
    op.drop_index("ix_review_pairs_queue_order", table_name="review_pairs")
    with op.batch_alter_table("review_pairs") as batch:
        batch.drop_column("queue")
        batch.drop_column("note")
