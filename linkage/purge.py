"""Linkage's part of ``ipvi purge``: forget a person's or a record's links and review rows.

Listed with the other stages' steps in :mod:`workflows.purge`.
"""

from __future__ import annotations

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from ipvi.errors import IpviError
from ipvi.purge import PurgeTarget, scrub
from ipvi.tables.linkage import (
    crosswalk,
    linkage_runs,
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


def record_persons(session: Session, target: PurgeTarget) -> PurgeTarget:
    """Name the persons the target touches: the target person and every person one of its
    records links to (their scores, lists and model artefacts rest on those records)."""
    ids = list(target.record_ids)
    persons = [target.person_id] if target.person_id else []
    for start in range(0, len(ids), 500):  # stay under the bound-parameter limits
        persons += session.execute(
            select(crosswalk.c.person_id)
            .where(crosswalk.c.record_id.in_(ids[start : start + 500]))
            .distinct()
        ).scalars()
    return target.with_persons(persons)


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
    counts["linkage_run_reports_scrubbed"] = _scrub_run_reports(session, target)
    return counts


def _scrub_run_reports(session: Session, target: PurgeTarget) -> int:
    """Runs' stored parameters and metrics (the linkage report's largest clusters, say) with
    the target's ids replaced by ``[purged]``; how many runs changed."""
    identifiers = [*target.record_ids, *([target.person_id] if target.person_id else [])]
    changed_runs = 0
    columns = (linkage_runs.c.parameters, linkage_runs.c.metrics)
    for run_id, *stored in session.execute(select(linkage_runs.c.run_id, *columns)).all():
        cleaned = {}
        for column, value in zip(columns, stored, strict=True):
            value, changed = scrub(value, identifiers)
            if changed:
                cleaned[column.name] = value
        if cleaned:
            session.execute(
                update(linkage_runs).where(linkage_runs.c.run_id == run_id).values(**cleaned)
            )
            changed_runs += 1
    return changed_runs
