"""Ingest's step of ``ipvi purge``: remove a record's source rows from the ingest tables.

Removed: the current mention and all its versions, its field issues, its quarantined rows, and the
events that no remaining mention refers to (an incident shared with another person's mention
stays, since it is that person's record too). Events that named the record as their victim keep
the event but lose the pointer.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlalchemy import delete, select, union, update
from sqlalchemy.orm import Session

from ipvi.purge import PurgeTarget
from ipvi.tables.ingest import (
    event_versions,
    events,
    field_issues,
    mention_versions,
    mentions,
    quarantine,
)

BATCH = 500  # identifiers per IN (...) clause, well under every driver's parameter limit


def _batches(values: Sequence[str]) -> Iterator[list[str]]:
    values = list(values)
    for start in range(0, len(values), BATCH):
        yield values[start : start + BATCH]


def purge_step(session: Session, target: PurgeTarget) -> dict[str, int]:
    """Delete the ingest rows of ``target.record_ids``; return rows removed per table."""
    counts = dict.fromkeys(
        (
            "mentions",
            "mention_versions",
            "field_issues",
            "quarantine",
            "events",
            "event_versions",
            "victim_links_cleared",
        ),
        0,
    )
    event_ids: set[str] = set()
    for ids in _batches(target.record_ids):
        referenced = union(
            select(mentions.c.event_id).where(mentions.c.record_id.in_(ids)),
            select(mention_versions.c.event_id).where(mention_versions.c.record_id.in_(ids)),
        )
        event_ids.update(session.execute(referenced).scalars())
        for name, table in (
            ("field_issues", field_issues),
            ("mention_versions", mention_versions),
            ("mentions", mentions),
            ("quarantine", quarantine),
        ):
            counts[name] += session.execute(
                delete(table).where(table.c.record_id.in_(ids))
            ).rowcount
        for table in (events, event_versions):
            counts["victim_links_cleared"] += session.execute(
                update(table).where(table.c.victim_record_id.in_(ids)).values(victim_record_id=None)
            ).rowcount
    for ids in _batches(sorted(event_ids)):
        still_used = set(
            session.execute(
                union(
                    select(mentions.c.event_id).where(mentions.c.event_id.in_(ids)),
                    select(mention_versions.c.event_id).where(mention_versions.c.event_id.in_(ids)),
                )
            ).scalars()
        )
        orphans = [event_id for event_id in ids if event_id not in still_used]
        if orphans:
            for name, table in (("event_versions", event_versions), ("events", events)):
                counts[name] += session.execute(
                    delete(table).where(table.c.event_id.in_(orphans))
                ).rowcount
    return counts
