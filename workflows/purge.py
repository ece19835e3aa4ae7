"""``ipvi purge``: remove records or a person from every stage, in one transaction.

The engine (:class:`ipvi.purge.Purge`: target, tombstone, "never ingest again") is in the core;
each stage owns its step, ``purge_step(session, target) -> {table: rows removed}``, next to its
tables. This module is the one list of those steps and the order they run in.

To purge something new, write the stage's step (it runs inside the transaction, so it only
changes database rows) and add it to :data:`STEPS` before every step whose rows it refers to:
downstream stages first, ingest last. A resolver that widens the target (a person id to its
record ids) goes in :data:`RESOLVERS`. Work outside the database (files, MLflow artefacts) is
done by the caller after :func:`purge_registry` has committed, as ``ipvi purge`` rebuilds the
service's link index.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from ingest.lock import registry_lock
from ingest.purge import purge_step as ingest_step
from ipvi.db import session_scope
from ipvi.purge import Purge, PurgeResult, PurgeStep, PurgeTarget, Resolver
from linkage.purge import person_records
from linkage.purge import purge_step as linkage_step
from serving.audit_log import purge_step as serving_step
from training.store import purge_step as training_step

# In order. Downstream stages first: their rows refer to the records and persons purged
# upstream. The serving step removes nothing: it appends a chained tombstone to the audit log.
STEPS: tuple[PurgeStep, ...] = (
    serving_step,  # audit log: a tombstone with hashes only
    training_step,  # scores and evaluation rows of the persons the records make up
    linkage_step,  # crosswalk, review pairs, id changes and the person
    ingest_step,  # mentions and their versions, field issues, quarantine, orphaned events
)
RESOLVERS: tuple[Resolver, ...] = (person_records,)


def purge_registry(
    engine: Engine, target: PurgeTarget, *, reason: str, lock_timeout: float
) -> PurgeResult:
    """Run every step of :data:`STEPS` for ``target`` and leave a tombstone, or change nothing.

    Under the ingest lock, so that a concurrent ``ipvi ingest`` cannot store a record that is
    being purged.
    """
    purge = Purge(steps=list(STEPS), resolvers=list(RESOLVERS))
    with registry_lock(engine, timeout=lock_timeout), session_scope(engine) as session:
        return purge.run(session, target, reason=reason)
