"""Purge (expunction, correction): remove a person's or a record's rows from every stage.

A purge is a list of *steps*, one per stage, each ``step(session, target) -> {table: rows}``,
run in one transaction: either every stage forgets the target or none does. Before the steps,
*resolvers* may widen the target (linkage turns a person id into that person's record ids), so
each step sees everything it has to remove. What remains is a tombstone without identifiers: a
hash of the target, the reason, the time and the counts, plus a hash of each purged record id so
that ``ipvi ingest`` never stores that record again.

Stages contribute their step in their own package; :mod:`workflows.purge` lists them::

    purge = Purge(steps=[ingest_purge_step, linkage_purge_step], resolvers=[person_records])
    result = purge.run(session, PurgeTarget(record_ids=("PD-1001",)), reason="court order 12")
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from ipvi.errors import IpviError
from ipvi.tables.ingest import purge_tombstones, purged_records


@dataclass(frozen=True)
class PurgeTarget:
    """What to purge: source record ids and/or a person id (a linked person's records)."""

    record_ids: tuple[str, ...] = ()
    person_id: str | None = None

    def with_records(self, record_ids: Sequence[str]) -> PurgeTarget:
        """The same target with ``record_ids`` added (kept unique and in order)."""
        return replace(self, record_ids=tuple(dict.fromkeys((*self.record_ids, *record_ids))))


PurgeStep = Callable[[Session, PurgeTarget], dict[str, int]]
Resolver = Callable[[Session, PurgeTarget], PurgeTarget]


@dataclass(frozen=True)
class PurgeResult:
    """What a purge removed (rows per table) and the tombstone it left."""

    tombstone_id: int
    record_count: int
    counts: dict[str, int]

    @property
    def removed(self) -> int:
        return sum(self.counts.values())


def hash_identifier(value: str) -> str:
    """The one-way hash a tombstone keeps instead of an identifier."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@dataclass
class Purge:
    """A purge made of each stage's steps.

    Parameters
    ----------
    steps : list of callables
        ``step(session, target) -> {table: rows removed}``, run in order.
    resolvers : list of callables
        ``resolver(session, target) -> target``, run first, to widen the target.
    """

    steps: list[PurgeStep]
    resolvers: list[Resolver] = field(default_factory=list)

    def run(self, session: Session, target: PurgeTarget, *, reason: str) -> PurgeResult:
        """Run every step in ``session`` (the caller commits) and leave a tombstone."""
        if not target.record_ids and not target.person_id:
            raise IpviError("purge: give at least one record id or a person id")
        if not reason.strip():
            raise IpviError("purge: --reason must say why (court order, correction, ...)")
        original = target
        for resolve in self.resolvers:
            target = resolve(session, target)
        counts: dict[str, int] = {}
        for step in self.steps:
            for table, rows in step(session, target).items():
                counts[table] = counts.get(table, 0) + int(rows)
        key = "\n".join(sorted(original.record_ids)) + f"\nperson:{original.person_id or ''}"
        tombstone_id = session.execute(
            insert(purge_tombstones)
            .values(
                purged_at=datetime.now(),
                reason=reason.strip(),
                target_hash=hash_identifier(key),
                record_count=len(target.record_ids),
                counts=counts,
            )
            .returning(purge_tombstones.c.tombstone_id)
        ).scalar_one()
        hashes = {hash_identifier(record_id) for record_id in target.record_ids}
        known = set(
            session.execute(
                select(purged_records.c.record_hash).where(purged_records.c.record_hash.in_(hashes))
            ).scalars()
        )
        fresh = [{"record_hash": h, "tombstone_id": tombstone_id} for h in hashes - known]
        if fresh:
            session.execute(insert(purged_records), fresh)
        return PurgeResult(
            tombstone_id=tombstone_id, record_count=len(target.record_ids), counts=counts
        )
