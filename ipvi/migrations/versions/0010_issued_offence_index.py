"""An index on issued scores by offence, for the monitor's choice of each offence's first score.

``ipvi monitor`` and ``ipvi audit --issued`` keep, for each offence (person and index event)
a model version scored, its earliest score: ``ix_issued_scores_offence`` on
(``model_version``, ``person_id``, ``index_event_id``, ``as_of``) gives the offences in order
from the index alone, and then each first score by one lookup, instead of reading every
issued row with its stored inputs (2.4 million at 100,000 persons over two years of lists).

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_issued_scores_offence",
        "issued_scores",
        ["model_version", "person_id", "index_event_id", "as_of"],
    )


def downgrade() -> None:
    op.drop_index("ix_issued_scores_offence", table_name="issued_scores")
