"""Tables of the training stage: runs, evaluation predictions and truth, scores, tier lists.

Revision ID: 0003
Revises: 0002

A frozen snapshot of :mod:`ipvi.tables.training` (tests/test_training_db.py checks the two agree).
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "training_runs",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("model_name", sa.String(length=100), nullable=False),
        sa.Column("model_version", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("data_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("n_train", sa.Integer(), nullable=False),
        sa.Column("n_test", sa.Integer(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_training_runs")),
    )
    op.create_table(
        "evaluation_predictions",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("model_version", sa.String(length=20), nullable=False),
        sa.Column("index_event_id", sa.String(length=64), nullable=False),
        sa.Column("person_id", sa.String(length=64), nullable=False),
        sa.Column("as_of", sa.DateTime(), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("band", sa.String(length=40), nullable=False),
        sa.Column("band_use", sa.String(length=20), nullable=False),
        sa.Column("tier", sa.String(length=1), nullable=False),
        sa.Column("provisional", sa.Boolean(), nullable=False),
        sa.Column("identity_review_required", sa.Boolean(), nullable=False),
        sa.Column("possible_dual_arrest", sa.Boolean(), nullable=False),
        sa.Column("tier_reasons", sa.JSON(), nullable=False),
        sa.Column("reason_codes", sa.JSON(), nullable=False),
        sa.Column("lethality_flags", sa.JSON(), nullable=False),
        sa.Column("scorecard_points", sa.Integer(), nullable=False),
        sa.Column("odara_count", sa.Integer(), nullable=False),
        sa.Column("prior_ipv_offences", sa.Integer(), nullable=False),
        sa.Column("age", sa.Float(), nullable=True),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "run_id", "index_event_id", "person_id", name=op.f("pk_evaluation_predictions")
        ),
    )
    op.create_index("ix_evaluation_predictions_person_id", "evaluation_predictions", ["person_id"])
    op.create_table(
        "evaluation_truth",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("index_event_id", sa.String(length=64), nullable=False),
        sa.Column("person_id", sa.String(length=64), nullable=False),
        sa.Column("p_recorded", sa.Float(), nullable=True),
        sa.Column("true_reoffense", sa.Integer(), nullable=True),
        sa.Column("truth_tier", sa.String(length=1), nullable=True),
        sa.Column("truth_prior_ipv_offences", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint(
            "run_id", "index_event_id", "person_id", name=op.f("pk_evaluation_truth")
        ),
    )
    op.create_index("ix_evaluation_truth_person_id", "evaluation_truth", ["person_id"])
    op.create_table(
        "model_training_persons",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("person_hash", sa.String(length=64), nullable=False),
        sa.Column("model_name", sa.String(length=100), nullable=False),
        sa.Column("model_version", sa.String(length=20), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "person_hash", name=op.f("pk_model_training_persons")),
    )
    op.create_index(
        "ix_model_training_persons_person_hash", "model_training_persons", ["person_hash"]
    )
    op.create_table(
        "tier_lists",
        sa.Column("list_id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("as_of", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("model_name", sa.String(length=100), nullable=False),
        sa.Column("model_version", sa.String(length=20), nullable=False),
        sa.Column("n_persons", sa.Integer(), nullable=False),
        sa.Column("csv_path", sa.String(length=500), nullable=False),
        sa.Column("html_path", sa.String(length=500), nullable=False),
        sa.PrimaryKeyConstraint("list_id", name=op.f("pk_tier_lists")),
    )
    op.create_table(
        "scores",
        sa.Column("score_id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("list_id", sa.Integer(), nullable=True),
        sa.Column("person_id", sa.String(length=64), nullable=False),
        sa.Column("as_of", sa.DateTime(), nullable=False),
        sa.Column("index_event_id", sa.String(length=64), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("band", sa.String(length=40), nullable=False),
        sa.Column("band_use", sa.String(length=20), nullable=False),
        sa.Column("tier", sa.String(length=1), nullable=False),
        sa.Column("provisional", sa.Boolean(), nullable=False),
        sa.Column("identity_review_required", sa.Boolean(), nullable=False),
        sa.Column("possible_dual_arrest", sa.Boolean(), nullable=False),
        sa.Column("tier_reasons", sa.JSON(), nullable=False),
        sa.Column("reason_codes", sa.JSON(), nullable=False),
        sa.Column("lethality_flags", sa.JSON(), nullable=False),
        sa.Column("model_name", sa.String(length=100), nullable=False),
        sa.Column("model_version", sa.String(length=20), nullable=False),
        sa.Column("mlflow_run_id", sa.String(length=64), nullable=True),
        sa.Column("linkage_run_id", sa.String(length=64), nullable=True),
        sa.Column("scored_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("score_id", name=op.f("pk_scores")),
    )
    op.create_index("ix_scores_list_id", "scores", ["list_id"])
    op.create_index("ix_scores_person_id", "scores", ["person_id"])


def downgrade() -> None:
    op.drop_table("scores")
    op.drop_table("tier_lists")
    op.drop_table("model_training_persons")
    op.drop_table("evaluation_truth")
    op.drop_table("evaluation_predictions")
    op.drop_table("training_runs")
