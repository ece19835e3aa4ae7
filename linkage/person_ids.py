"""What a person id answers for today: itself, the survivor of a merge, or the parts of a split.

Person ids are stable across linkage runs (:mod:`linkage.incremental`): a merge keeps the oldest
id and retires the others, each pointing to its survivor; a split retires the id and mints one
new id per part. ``person_id_changes`` logs every retirement (``retired_id`` -> ``successor_id``,
``merge`` or ``split``). :func:`resolve_person_ids` follows that log, for the service and for
anyone else holding an old id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from ipvi.tables.linkage import person_id_changes, persons

CURRENT, MERGED, SPLIT, UNKNOWN = "current", "merged", "split", "unknown"
MAX_MERGE_HOPS = 20  # a longer chain of merges stops at the id reached

# Built once: building a statement and its cache key costs more than running it on SQLite.
_STATUSES = select(persons.c.person_id, persons.c.status).where(
    persons.c.person_id.in_(bindparam("person_ids", expanding=True))
)
_SUCCESSORS = select(person_id_changes.c.successor_id, person_id_changes.c.kind).where(
    person_id_changes.c.retired_id == bindparam("retired_id")
)


@dataclass(frozen=True)
class Resolution:
    """What one requested id answers for.

    ``status`` is ``current`` (the id itself), ``merged`` (``person_id`` is its survivor,
    following later merges too), ``split`` (``successor_ids`` are the new ids; there is no
    single answer) or ``unknown`` (the registry never had it).
    """

    status: str
    person_id: str | None = None
    successor_ids: tuple[str, ...] = ()


def resolve_person_ids(session: Session, person_ids: Sequence[str]) -> dict[str, Resolution]:
    """The :class:`Resolution` of each distinct requested id, in one transaction."""
    wanted = list(dict.fromkeys(person_ids))
    status = dict(session.execute(_STATUSES, {"person_ids": wanted}).all())
    resolved: dict[str, Resolution] = {}
    for requested in wanted:
        if requested not in status:
            resolved[requested] = Resolution(UNKNOWN)
            continue
        current, hops, split = requested, 0, ()
        while status.get(current) == "retired":
            changes = session.execute(_SUCCESSORS, {"retired_id": current}).all()
            if not changes:
                break
            if any(kind == "split" for _, kind in changes):
                split = tuple(sorted({successor for successor, _ in changes}))
                break
            current = changes[0][0]
            hops += 1
            if hops > MAX_MERGE_HOPS:
                break
            if current not in status:
                status.update(session.execute(_STATUSES, {"person_ids": [current]}).all())
        if split:
            resolved[requested] = Resolution(SPLIT, successor_ids=split)
        else:
            resolved[requested] = Resolution(
                CURRENT if current == requested else MERGED, person_id=current
            )
    return resolved
