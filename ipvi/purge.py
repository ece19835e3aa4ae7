"""Purge (expunction, correction): remove a person's or a record's rows from every stage.

A purge is a list of *steps*, one per stage, each ``step(session, target) -> {table: rows}``,
run in one transaction: either every stage forgets the target or none does. Before the steps,
*resolvers* may widen the target (linkage turns a person id into that person's record ids and
names the persons a record purge touches), so each step sees everything it has to remove.
What remains is a tombstone without identifiers: a keyed pseudonym of the target
(:meth:`ipvi.site_key.SiteKey.pseudonym`: no id can be tried against it without the site
secret), the reason, the time and the counts, plus the pseudonym of each purged record id so
that ``ipvi ingest`` never stores that record again. Steps see the tombstone's id
(``target.tombstone_id``), so a row that is kept (a staff decision) can point to it instead of
to the person.

Stages contribute their step in their own package; :mod:`workflows.purge` lists them::

    purge = Purge(steps=[ingest_purge_step, linkage_purge_step], resolvers=[person_records],
                  key=load_site_key(config.paths.audit_key_file, create=True))
    result = purge.run(session, PurgeTarget(record_ids=("PD-1001",)), reason="court order 12")
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from ipvi.errors import IpviError
from ipvi.site_key import PSEUDONYM_CHARS, SiteKey, legacy_hash
from ipvi.tables.ingest import purge_tombstones, purged_records


@dataclass(frozen=True)
class PurgeTarget:
    """What to purge: source record ids and/or a person id (a linked person's records).

    Attributes
    ----------
    persons : tuple of str
        Every person whose derived rows (scores, lists, model artefacts) the purge touches:
        the target person and the persons its records link to (filled by the resolvers).
    tombstone_id : int or None
        The purge's tombstone, set before the steps run.
    pseudonyms : dict
        The keyed pseudonym of the person id, every record id and every affected person,
        computed before the steps run (steps never see the site key).
    """

    record_ids: tuple[str, ...] = ()
    person_id: str | None = None
    persons: tuple[str, ...] = ()
    tombstone_id: int | None = None
    pseudonyms: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def with_records(self, record_ids: Sequence[str]) -> PurgeTarget:
        """The same target with ``record_ids`` added (kept unique and in order)."""
        return replace(self, record_ids=tuple(dict.fromkeys((*self.record_ids, *record_ids))))

    def with_persons(self, person_ids: Sequence[str]) -> PurgeTarget:
        """The same target with ``person_ids`` among its affected persons."""
        return replace(self, persons=tuple(dict.fromkeys((*self.persons, *person_ids))))


PurgeStep = Callable[[Session, PurgeTarget], dict[str, int]]
Resolver = Callable[[Session, PurgeTarget], PurgeTarget]


@dataclass(frozen=True)
class PurgeResult:
    """What a purge removed (rows per table), the tombstone it left and the resolved target
    (the steps outside the database work from it once the rows are gone)."""

    tombstone_id: int
    record_count: int
    counts: dict[str, int]
    target: PurgeTarget = field(default_factory=PurgeTarget)

    @property
    def removed(self) -> int:
        return sum(self.counts.values())


def whole_identifiers(values: Iterable[str], *, raw: bool = False) -> re.Pattern | None:
    """A pattern matching any of ``values`` as a whole identifier (``PD-100`` does not match
    inside ``PD-1001``), in text or, ``raw``, in bytes; None for no values."""
    values = sorted({v for v in values if v}, key=len, reverse=True)
    if not values:
        return None
    alternatives = "|".join(re.escape(v) for v in values)
    pattern = rf"(?<![A-Za-z0-9._:-])(?:{alternatives})(?![A-Za-z0-9_:-]|\.[A-Za-z0-9])"
    return re.compile(pattern.encode() if raw else pattern)


def scrub(value, identifiers: Sequence[str]) -> tuple[object, int]:
    """JSON data (a run's stored report, say) with ``identifiers`` replaced by ``[purged]``
    wherever a string holds one as a whole identifier; and how many strings changed."""
    pattern = whole_identifiers(identifiers)
    changed = 0

    def walk(node):
        nonlocal changed
        if isinstance(node, dict):
            return {key: walk(item) for key, item in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        if isinstance(node, str) and pattern is not None:
            replaced, count = pattern.subn("[purged]", node)
            changed += bool(count)
            return replaced
        return node

    return walk(value), changed


@dataclass(frozen=True)
class PurgedRecords:
    """The pseudonyms of every purged record id: ``ipvi ingest`` never stores those records
    again.

    Parameters
    ----------
    hashes : frozenset of str
        ``purged_records.record_hash``: keyed pseudonyms, and the unkeyed SHA-256 that
        purges before the site key stored.
    key : SiteKey or None
        Needed as soon as ``hashes`` is not empty.
    """

    hashes: frozenset[str] = frozenset()
    key: SiteKey | None = None

    def contains(self, record_ids: Sequence[str]) -> list[bool]:
        """Whether each of ``record_ids`` was purged."""
        if not self.hashes:
            return [False] * len(record_ids)
        if self.key is None:
            raise IpviError(
                "the registry holds purged records: ingest needs the site key to refuse them "
                "(IPVI_AUDIT_KEY or paths.audit_key_file)"
            )
        forms = [self.key.pseudonym]
        if any(len(h) != PSEUDONYM_CHARS for h in self.hashes):  # purged before keyed hashes
            forms.append(legacy_hash)
        return [any(form(value) in self.hashes for form in forms) for value in record_ids]


def tombstone_hash(key: SiteKey, target: PurgeTarget) -> str:
    """The pseudonym a tombstone keeps of what was asked for (so ``ipvi purge --verify`` can
    find the tombstone of a given id)."""
    text = "\n".join(sorted(target.record_ids)) + f"\nperson:{target.person_id or ''}"
    return key.pseudonym(text)


@dataclass
class Purge:
    """A purge made of each stage's steps.

    Parameters
    ----------
    steps : list of callables
        ``step(session, target) -> {table: rows removed}``, run in order.
    key : SiteKey
        The site secret the tombstone's pseudonyms are keyed with.
    resolvers : list of callables
        ``resolver(session, target) -> target``, run first, to widen the target.
    """

    steps: list[PurgeStep]
    key: SiteKey
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
        tombstone_id = session.execute(
            insert(purge_tombstones)
            .values(
                purged_at=datetime.now(),
                reason=reason.strip(),
                target_hash=tombstone_hash(self.key, original),
                record_count=len(target.record_ids),
                counts={},
            )
            .returning(purge_tombstones.c.tombstone_id)
        ).scalar_one()
        values = {*target.record_ids, *target.persons, target.person_id} - {None}
        target = replace(
            target,
            tombstone_id=tombstone_id,
            pseudonyms={value: self.key.pseudonym(value) for value in values},
        )
        counts: dict[str, int] = {}
        for step in self.steps:
            for table, rows in step(session, target).items():
                counts[table] = counts.get(table, 0) + int(rows)
        session.execute(
            update(purge_tombstones)
            .where(purge_tombstones.c.tombstone_id == tombstone_id)
            .values(counts=counts)
        )
        hashes = {target.pseudonyms[record_id] for record_id in target.record_ids}
        known = set(
            session.execute(
                select(purged_records.c.record_hash).where(purged_records.c.record_hash.in_(hashes))
            ).scalars()
        )
        fresh = [{"record_hash": h, "tombstone_id": tombstone_id} for h in hashes - known]
        if fresh:
            session.execute(insert(purged_records), fresh)
        return PurgeResult(
            tombstone_id=tombstone_id,
            record_count=len(target.record_ids),
            counts=counts,
            target=target,
        )
