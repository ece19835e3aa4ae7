"""Linkage health: the identity layer every score rests on, read from linkage's tables.

The link rate (the share of records linked to at least one other record of the same
person), the review backlog (pending pairs, and the age of the oldest, from the start of the
run that queued it), and the merges and splits each run made. The share of provisional tiers
is a property of the issued scores, reported per period by :mod:`monitoring.report`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ipvi.tables.linkage import crosswalk, linkage_runs, person_id_changes, review_pairs


def linkage_health(session: Session, *, now: datetime) -> dict:
    """Link rate, review backlog and merges/splits per run; the backlog's age at ``now``
    (naive local time, the clock linkage runs are stamped with)."""
    sizes = (
        select(func.count().label("records"))
        .select_from(crosswalk)
        .group_by(crosswalk.c.person_id)
        .subquery()
    )
    records, linked = session.execute(
        select(
            func.coalesce(func.sum(sizes.c.records), 0),
            func.coalesce(func.sum(sizes.c.records).filter(sizes.c.records > 1), 0),
        )
    ).one()
    pending, oldest = session.execute(
        select(func.count(), func.min(linkage_runs.c.started_at))
        .select_from(review_pairs)
        .join(linkage_runs, linkage_runs.c.run_id == review_pairs.c.linkage_run_id)
        .where(review_pairs.c.status == "pending")
    ).one()
    changes = session.execute(
        select(
            person_id_changes.c.run_id,
            person_id_changes.c.kind,
            func.count(func.distinct(person_id_changes.c.retired_id)),
        ).group_by(person_id_changes.c.run_id, person_id_changes.c.kind)
    ).all()
    started = dict(session.execute(select(linkage_runs.c.run_id, linkage_runs.c.started_at)).all())
    runs: dict[str, dict] = {}
    for run_id, kind, n in changes:
        entry = runs.setdefault(
            run_id, {"run_id": run_id, "started_at": started.get(run_id), "merge": 0, "split": 0}
        )
        entry[kind] = int(n)
    return {
        "records": int(records),
        "link_rate": float(linked) / records if records else None,
        "review_backlog": int(pending),
        "review_backlog_oldest_days": (now - oldest).total_seconds() / 86400 if oldest else None,
        "changes_by_run": sorted(
            (
                {**entry, "started_at": entry["started_at"] and entry["started_at"].isoformat()}
                for entry in runs.values()
            ),
            key=lambda entry: entry["started_at"] or "",
        ),
    }
