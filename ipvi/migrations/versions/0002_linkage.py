"""Tables of the linkage stage: persons, crosswalk, review queue, linkage runs and models.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = 64


def upgrade() -> None:
    op.create_table(
        "linkage_runs",
        sa.Column("run_id", sa.String(40), primary_key=True),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("parameters", sa.JSON),
        sa.Column("timings", sa.JSON),
        sa.Column("metrics", sa.JSON),
        sa.Column("n_mentions", sa.Integer),
        sa.Column("n_persons", sa.Integer),
        sa.Column("n_review", sa.Integer),
    )
    op.create_index("ix_linkage_runs_status_finished_at", "linkage_runs", ["status", "finished_at"])
    op.create_table(
        "linkage_models",
        sa.Column("run_id", sa.String(40), primary_key=True),
        sa.Column("settings_hash", sa.String(64), nullable=False),
        sa.Column("model", sa.JSON, nullable=False),
    )
    op.create_table(
        "persons",
        sa.Column("person_id", sa.String(40), primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("successor_ids", sa.JSON),
        sa.Column("created_run_id", sa.String(40), nullable=False),
        sa.Column("retired_run_id", sa.String(40)),
    )
    op.create_table(
        "crosswalk",
        sa.Column("record_id", sa.String(ID), primary_key=True),
        sa.Column("person_id", sa.String(40), nullable=False),
        sa.Column("link_probability", sa.Float, nullable=False),
        sa.Column("linkage_run_id", sa.String(40), nullable=False),
    )
    op.create_index("ix_crosswalk_person_id", "crosswalk", ["person_id"])
    op.create_table(
        "person_id_changes",
        sa.Column("change_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("retired_id", sa.String(40), nullable=False),
        sa.Column("successor_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
    )
    op.create_index("ix_person_id_changes_retired_id", "person_id_changes", ["retired_id"])
    op.create_table(
        "review_pairs",
        sa.Column("pair_id", sa.String(40), primary_key=True),
        sa.Column("record_id_a", sa.String(ID), nullable=False),
        sa.Column("record_id_b", sa.String(ID), nullable=False),
        sa.Column("match_probability", sa.Float, nullable=False),
        sa.Column("match_weight", sa.Float, nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
        sa.Column("priority", sa.Float),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("decision", sa.String(16)),
        sa.Column("reviewer", sa.Text),
        sa.Column("decided_at", sa.DateTime),
        sa.Column("linkage_run_id", sa.String(40), nullable=False),
    )
    op.create_index("ix_review_pairs_status", "review_pairs", ["status"])
    op.create_index("ix_review_pairs_record_id_a", "review_pairs", ["record_id_a"])
    op.create_index("ix_review_pairs_record_id_b", "review_pairs", ["record_id_b"])
    op.create_table(
        "linkage_lock",
        sa.Column("name", sa.String(16), primary_key=True),
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("acquired_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("linkage_lock")
    op.drop_index("ix_review_pairs_record_id_b", table_name="review_pairs")
    op.drop_index("ix_review_pairs_record_id_a", table_name="review_pairs")
    op.drop_index("ix_review_pairs_status", table_name="review_pairs")
    op.drop_table("review_pairs")
    op.drop_index("ix_person_id_changes_retired_id", table_name="person_id_changes")
    op.drop_table("person_id_changes")
    op.drop_index("ix_crosswalk_person_id", table_name="crosswalk")
    op.drop_table("crosswalk")
    op.drop_table("persons")
    op.drop_table("linkage_models")
    op.drop_index("ix_linkage_runs_status_finished_at", table_name="linkage_runs")
    op.drop_table("linkage_runs")
