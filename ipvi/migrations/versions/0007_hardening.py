"""Keyed audit chain and its checks; the linkage lock's holder and lease.

``audit_log.key_id`` names the site key that chained a row (rows already there were chained
without a key and keep null); ``audit_checks`` records verifications and checkpoints; the
linkage lock row names its holder's host and process and carries a lease, so a lock left by a
killed run can be told from a live one.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("key_id", sa.String(16), nullable=True))
    op.create_table(
        "audit_checks",
        sa.Column("check_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("checked_at", sa.DateTime(), nullable=False),
        sa.Column("first_seq", sa.Integer(), nullable=True),
        sa.Column("last_seq", sa.Integer(), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("first_bad_seq", sa.Integer(), nullable=True),
        sa.Column("detail", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("check_id", name="pk_audit_checks"),
    )
    with op.batch_alter_table("linkage_lock") as batch:
        batch.add_column(sa.Column("host", sa.String(255), nullable=True))
        batch.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("process_started", sa.Float(), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("linkage_lock") as batch:
        for name in ("lease_expires_at", "process_started", "pid", "host"):
            batch.drop_column(name)
    op.drop_table("audit_checks")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("key_id")
