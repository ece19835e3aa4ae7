"""Tables of the training stage: runs, evaluation predictions and truth, scores, tier lists.

``evaluation_predictions`` is the hand-over to the fairness audit and the service's parity
test: the test-period scores of one training run, keyed by run id and model version, with no
protected attribute (``age`` is there for the audit's age bands). ``evaluation_truth`` holds the
generator's truth for the same rows (only with ``ipvi train --truth``). ``scores`` holds the
scores of ``ipvi score``; ``tier_lists`` the coordinators' lists. ``model_training_persons``
keeps a SHA-256 of each person a version was trained on, so a purge can name those versions.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Table,
)

from ipvi.tables import metadata

training_runs = Table(
    "training_runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("model_name", String(100), nullable=False),
    Column("model_version", String(20), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("data_fingerprint", String(64), nullable=False),
    Column("n_train", Integer, nullable=False),
    Column("n_test", Integer, nullable=False),
    Column("summary", JSON, nullable=False),
    # Each model input's distribution over the test period's rows (training.reference): drift's
    # baseline. Null for runs trained before it was kept.
    Column("feature_reference", JSON, nullable=True),
)

evaluation_predictions = Table(
    "evaluation_predictions",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("model_version", String(20), nullable=False),
    Column("index_event_id", String(64), primary_key=True),
    Column("person_id", String(64), primary_key=True),
    Column("as_of", DateTime, nullable=False),
    Column("probability", Float, nullable=False),
    Column("band", String(40), nullable=False),
    Column("band_use", String(20), nullable=False),
    Column("tier", String(1), nullable=False),
    Column("provisional", Boolean, nullable=False),
    Column("identity_review_required", Boolean, nullable=False),
    Column("possible_dual_arrest", Boolean, nullable=False),
    Column("tier_reasons", JSON, nullable=False),
    Column("reason_codes", JSON, nullable=False),
    Column("lethality_flags", JSON, nullable=False),
    Column("scorecard_points", Integer, nullable=False),
    Column("odara_count", Integer, nullable=False),
    Column("prior_ipv_offences", Integer, nullable=False),
    Column("age", Float, nullable=True),
    Column("label", Integer, nullable=False),
    Index("ix_evaluation_predictions_person_id", "person_id"),
)

evaluation_truth = Table(
    "evaluation_truth",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("index_event_id", String(64), primary_key=True),
    Column("person_id", String(64), primary_key=True),
    Column("p_recorded", Float, nullable=True),
    Column("true_reoffense", Integer, nullable=True),
    Column("truth_tier", String(1), nullable=True),
    Column("truth_prior_ipv_offences", Integer, nullable=True),
    Index("ix_evaluation_truth_person_id", "person_id"),
)

model_training_persons = Table(
    "model_training_persons",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("person_hash", String(64), primary_key=True),
    Column("model_name", String(100), nullable=False),
    Column("model_version", String(20), nullable=False),
    Index("ix_model_training_persons_person_hash", "person_hash"),
)

tier_lists = Table(
    "tier_lists",
    metadata,
    Column("list_id", Integer, primary_key=True, autoincrement=True),
    Column("as_of", DateTime, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("model_name", String(100), nullable=False),
    Column("model_version", String(20), nullable=False),
    Column("n_persons", Integer, nullable=False),
    Column("csv_path", String(500), nullable=False),
    Column("html_path", String(500), nullable=False),
)

scores = Table(
    "scores",
    metadata,
    Column("score_id", Integer, primary_key=True, autoincrement=True),
    Column("list_id", Integer, nullable=True),
    Column("person_id", String(64), nullable=False),
    Column("as_of", DateTime, nullable=False),
    Column("index_event_id", String(64), nullable=False),
    Column("probability", Float, nullable=False),
    Column("band", String(40), nullable=False),
    Column("band_use", String(20), nullable=False),
    Column("tier", String(1), nullable=False),
    Column("provisional", Boolean, nullable=False),
    Column("identity_review_required", Boolean, nullable=False),
    Column("possible_dual_arrest", Boolean, nullable=False),
    Column("tier_reasons", JSON, nullable=False),
    Column("reason_codes", JSON, nullable=False),
    Column("lethality_flags", JSON, nullable=False),
    Column("model_name", String(100), nullable=False),
    Column("model_version", String(20), nullable=False),
    Column("mlflow_run_id", String(64), nullable=True),
    Column("linkage_run_id", String(64), nullable=True),
    Column("scored_at", DateTime, nullable=False),
    Index("ix_scores_person_id", "person_id"),
    Index("ix_scores_list_id", "list_id"),
)
