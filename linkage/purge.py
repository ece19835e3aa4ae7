"""Linkage's part of ``ipvi purge``: forget a person's or a record's links and review rows.

Listed with the other stages' steps in :mod:`workflows.purge`.
"""

from __future__ import annotations

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from ipvi.errors import IpviError
from ipvi.purge import PurgeTarget
from ipvi.tables.linkage import (
    crosswalk,
    person_id_changes,
    persons,
    review_leases,
    review_pairs,
    review_sample,
)


def person_records(session: Session, target: PurgeTarget) -> PurgeTarget:
    """Widen a person-id target to the record ids the crosswalk links to that person."""
    if not target.person_id:
        return target
    known = session.execute(
        select(persons.c.status).where(persons.c.person_id == target.person_id)
    ).scalar_one_or_none()
    if known is None:
        raise IpviError(f"purge: unknown person id {target.person_id}")
    records = session.execute(
        select(crosswalk.c.record_id).where(crosswalk.c.person_id == target.person_id)
    ).scalars()
    return target.with_records(list(records))


def purge_step(session: Session, target: PurgeTarget) -> dict[str, int]:
    """Delete the target's crosswalk rows, review pairs (with their accuracy-sample and lease
    rows), and (for a person id) the person."""
    counts: dict[str, int] = {}
    ids = list(target.record_ids)
    removed_crosswalk = removed_review = 0
    for start in range(0, len(ids), 500):  # stay under the bound-parameter limits
        chunk = ids[start : start + 500]
        removed_crosswalk += session.execute(
            delete(crosswalk).where(crosswalk.c.record_id.in_(chunk))
        ).rowcount
        touching = select(review_pairs.c.pair_id).where(
            or_(review_pairs.c.record_id_a.in_(chunk), review_pairs.c.record_id_b.in_(chunk))
        )
        for table in (review_sample, review_leases):
            session.execute(delete(table).where(table.c.pair_id.in_(touching)))
        removed_review += session.execute(
            delete(review_pairs).where(
                or_(review_pairs.c.record_id_a.in_(chunk), review_pairs.c.record_id_b.in_(chunk))
            )
        ).rowcount
    counts["crosswalk"] = removed_crosswalk
    counts["review_pairs"] = removed_review
    if target.person_id:
        counts["person_id_changes"] = session.execute(
            delete(person_id_changes).where(
                or_(
                    person_id_changes.c.retired_id == target.person_id,
                    person_id_changes.c.successor_id == target.person_id,
                )
            )
        ).rowcount
        counts["persons"] = session.execute(
            delete(persons).where(persons.c.person_id == target.person_id)
        ).rowcount
    return counts
