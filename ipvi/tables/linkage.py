"""Tables of the linkage stage (migration ``0002``).

``persons`` holds every person id ever minted (``seq`` orders them: the oldest survives a
merge); a retired id lists its successor(s). ``crosswalk`` maps each current mention to its
person; a run replaces it in one transaction. ``person_id_changes`` logs merges and splits per
run. ``review_pairs`` is the clerical queue: ``pair_id`` is stable for a pair of records, so a
decision survives later runs and binds them. ``linkage_runs`` logs each run; ``linkage_models``
keeps what a run learned (m / u, prior, term frequencies and the hash of the settings they fit),
so the service builds its link index without refitting; ``linkage_lock`` holds the one running
linkage (a second run fails fast instead of interleaving).
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, DateTime, Float, Index, Integer, String, Table, Text

from ipvi.tables import metadata

ID = 64

linkage_runs = Table(
    "linkage_runs",
    metadata,
    Column("run_id", String(40), primary_key=True),
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    Column("status", String(16), nullable=False),  # running | succeeded | failed
    Column("parameters", JSON),
    Column("timings", JSON),
    Column("metrics", JSON),
    Column("n_mentions", Integer),
    Column("n_persons", Integer),
    Column("n_review", Integer),
    # The service polls "newest succeeded run" every few seconds: keep that an index lookup.
    Index("ix_linkage_runs_status_finished_at", "status", "finished_at"),
)

# Term frequencies hold standardised name values, so they live here, not in the run log.
linkage_models = Table(
    "linkage_models",
    metadata,
    Column("run_id", String(40), primary_key=True),
    Column("settings_hash", String(64), nullable=False),
    Column("model", JSON, nullable=False),
)

persons = Table(
    "persons",
    metadata,
    Column("person_id", String(40), primary_key=True),
    Column("seq", Integer, nullable=False, unique=True),
    Column("status", String(16), nullable=False),  # active | retired
    Column("successor_ids", JSON),
    Column("created_run_id", String(40), nullable=False),
    Column("retired_run_id", String(40)),
)

crosswalk = Table(
    "crosswalk",
    metadata,
    Column("record_id", String(ID), primary_key=True),
    Column("person_id", String(40), nullable=False),
    Column("link_probability", Float, nullable=False),
    Column("linkage_run_id", String(40), nullable=False),
    Index("ix_crosswalk_person_id", "person_id"),
)

person_id_changes = Table(
    "person_id_changes",
    metadata,
    Column("change_id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(40), nullable=False),
    Column("retired_id", String(40), nullable=False),
    Column("successor_id", String(40), nullable=False),
    Column("kind", String(8), nullable=False),  # merge | split
    Index("ix_person_id_changes_retired_id", "retired_id"),
)

review_pairs = Table(
    "review_pairs",
    metadata,
    Column("pair_id", String(40), primary_key=True),
    Column("record_id_a", String(ID), nullable=False),
    Column("record_id_b", String(ID), nullable=False),
    Column("match_probability", Float, nullable=False),
    Column("match_weight", Float, nullable=False),
    Column("evidence", JSON, nullable=False),
    Column("priority", Float),
    Column("status", String(16), nullable=False),  # pending | decided | superseded
    Column("decision", String(16)),  # match | non-match | unsure
    Column("reviewer", Text),
    Column("decided_at", DateTime),
    Column("linkage_run_id", String(40), nullable=False),
    Index("ix_review_pairs_status", "status"),
    Index("ix_review_pairs_record_id_a", "record_id_a"),
    Index("ix_review_pairs_record_id_b", "record_id_b"),
)

linkage_lock = Table(
    "linkage_lock",
    metadata,
    Column("name", String(16), primary_key=True),
    Column("run_id", String(40), nullable=False),
    Column("acquired_at", DateTime, nullable=False),
    # The holder (ipvi.locks.LockHolder) and its lease, renewed while it runs: a row whose
    # process is gone, or whose lease ran out, is stale (null: written before leases).
    Column("host", String(255), nullable=True),
    Column("pid", Integer, nullable=True),
    Column("process_started", Float, nullable=True),
    Column("lease_expires_at", DateTime, nullable=True),
)
