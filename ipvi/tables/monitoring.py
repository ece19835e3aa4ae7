"""The table the monitoring stage reads: every score the live system issued (migration ``0008``).

``issued_scores`` holds one row per score answered by ``/v1/score`` (``source`` = ``api``) or
written by ``ipvi score --all`` (``batch``), with the model's inputs as they were
(``features``: feature name -> value), so a score can be checked against its outcome and
its inputs against the training distribution long after the registry has changed. The
scoring library writes it (:mod:`training.issued`); ``ipvi monitor`` reads it. Rows are
pseudonymous: a registry person id (or the caller's pseudonymous id of an inline history),
never a name, date of birth or address; ``ipvi purge`` deletes a person's rows.
"""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, DateTime, Float, Index, Integer, String, Table

from ipvi.tables import metadata

issued_scores = Table(
    "issued_scores",
    metadata,
    # One id per issued row, made when it is issued: a spool flushed twice adds it once.
    Column("issue_id", String(32), primary_key=True),
    # The same for the same (person, as-of date, model version): a score issued twice.
    Column("score_id", String(32), nullable=False),
    Column("person_id", String(64), nullable=False),
    # registry: a registry person id; inline: the caller's id of a history sent in the request.
    Column("history", String(10), nullable=False),
    Column("as_of", DateTime, nullable=False),
    Column("index_event_id", String(64), nullable=False),
    Column("model_name", String(100), nullable=False),
    Column("model_version", String(20), nullable=False),
    Column("probability", Float, nullable=False),
    Column("band", String(40), nullable=False),
    Column("band_use", String(20), nullable=False),
    Column("tier", String(1), nullable=False),
    Column("provisional", Boolean, nullable=False),
    Column("lethality_flags", JSON, nullable=False),
    Column("scorecard_points", Integer, nullable=True),
    Column("features", JSON, nullable=False),
    Column("source", String(10), nullable=False),  # api | batch
    Column("linkage_run_id", String(64), nullable=True),
    Column("issued_at", DateTime, nullable=False),
    Index("ix_issued_scores_person_id", "person_id"),
    Index("ix_issued_scores_model_version_as_of", "model_version", "as_of"),
    Index("ix_issued_scores_score_id", "score_id"),
    # The monitor's offences and their first scores (migration ``0010``).
    Index("ix_issued_scores_offence", "model_version", "person_id", "index_event_id", "as_of"),
)
