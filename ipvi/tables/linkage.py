"""Tables of the linkage stage (migrations ``0002`` and ``0006``).

``persons`` holds every person id ever minted (``seq`` orders them: the oldest survives a
merge); a retired id lists its successor(s). ``crosswalk`` maps each current mention to its
person; a run replaces it in one transaction. ``person_id_changes`` logs merges and splits per
run. ``review_pairs`` is the clerical queue: ``pair_id`` is stable for a pair of records, so a
decision survives later runs and binds them. ``linkage_runs`` logs each run; ``linkage_models``
keeps what a run learned (m / u, prior, term frequencies and the hash of the settings they fit),
so the service builds its link index without refitting; ``linkage_lock`` holds the one running
linkage (a second run fails fast instead of interleaving). ``review_sample`` is each run's random
sample of pairs for the accuracy estimate, ``review_leases`` the pairs a reviewer holds now.
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
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    false,
    func,
    literal_column,
)

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
    Column("note", Text),  # the clerk's optional note (review page)
    # priority: between the review thresholds or refused for a conflict; sample: drawn only
    # for the accuracy estimate (review_sample)
    Column("queue", String(16), nullable=False, server_default="priority"),
    Index("ix_review_pairs_status", "status"),
    Index("ix_review_pairs_record_id_a", "record_id_a"),
    Index("ix_review_pairs_record_id_b", "record_id_b"),
)

# The review queue's order, defined once (``ipvi review export`` and the review pages): pairs
# whose decision could change a tier first (priority, highest first), then the most uncertain
# (match probability nearest 0.5). Literals, not bound parameters, so that the index below
# matches the ORDER BY on SQLite and PostgreSQL alike: the next pair is an index walk, not a
# sort of every pending pair.
REVIEW_QUEUE_ORDER = (
    review_pairs.c.priority.is_(None),
    review_pairs.c.priority.desc(),
    func.abs(review_pairs.c.match_probability - literal_column("0.5")),
    review_pairs.c.pair_id,
)
Index(
    "ix_review_pairs_queue_order",
    review_pairs.c.status,
    review_pairs.c.queue,
    *REVIEW_QUEUE_ORDER,
)

# The accuracy sample of each run (linkage.accuracy): pairs drawn at random within strata of
# (linked or not, match probability), in the order they were drawn.
review_sample = Table(
    "review_sample",
    metadata,
    Column("run_id", String(40), nullable=False),
    Column("pair_id", String(40), nullable=False),
    Column("stratum", String(40), nullable=False),
    Column("linked", Boolean, nullable=False),
    Column("match_probability", Float),
    Column("draw", Integer, nullable=False),
    PrimaryKeyConstraint("run_id", "pair_id", name="pk_review_sample"),
)

# A pair shown to one reviewer is held for them until ``expires_at`` (linkage.review_queue); a
# pair they skipped is kept from them (only) until then.
review_leases = Table(
    "review_leases",
    metadata,
    Column("pair_id", String(40), primary_key=True),
    Column("holder", String(100), nullable=False),
    Column("expires_at", DateTime, nullable=False),
    Column("skipped", Boolean, nullable=False, server_default=false()),
)

linkage_lock = Table(
    "linkage_lock",
    metadata,
    Column("name", String(16), primary_key=True),
    Column("run_id", String(40), nullable=False),
    Column("acquired_at", DateTime, nullable=False),
)
