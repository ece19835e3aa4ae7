"""Issued scores for monitoring, and each training run's feature reference for drift.

``issued_scores`` keeps every score the service answered and every row ``ipvi score --all``
wrote, with the model inputs it was computed from (:mod:`ipvi.tables.monitoring`);
``training_runs.feature_reference`` holds the distribution of each model input over the run's
training rows, the baseline ``ipvi monitor`` measures drift against.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "issued_scores",
        sa.Column("issue_id", sa.String(32), nullable=False),
        sa.Column("score_id", sa.String(32), nullable=False),
        sa.Column("person_id", sa.String(64), nullable=False),
        sa.Column("history", sa.String(10), nullable=False),
        sa.Column("as_of", sa.DateTime(), nullable=False),
        sa.Column("index_event_id", sa.String(64), nullable=False),
        sa.Column("model_name", sa.String(100), nullable=False),
        sa.Column("model_version", sa.String(20), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("band", sa.String(40), nullable=False),
        sa.Column("band_use", sa.String(20), nullable=False),
        sa.Column("tier", sa.String(1), nullable=False),
        sa.Column("provisional", sa.Boolean(), nullable=False),
        sa.Column("lethality_flags", sa.JSON(), nullable=False),
        sa.Column("scorecard_points", sa.Integer(), nullable=True),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(10), nullable=False),
        sa.Column("linkage_run_id", sa.String(64), nullable=True),
        sa.Column("issued_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("issue_id", name="pk_issued_scores"),
    )
    op.create_index("ix_issued_scores_person_id", "issued_scores", ["person_id"])
    op.create_index(
        "ix_issued_scores_model_version_as_of", "issued_scores", ["model_version", "as_of"]
    )
    op.create_index("ix_issued_scores_score_id", "issued_scores", ["score_id"])
    with op.batch_alter_table("training_runs") as batch:
        batch.add_column(sa.Column("feature_reference", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("training_runs") as batch:
        batch.drop_column("feature_reference")
    op.drop_table("issued_scores")
