"""Clerical review one pair at a time: the queues, leases, what a reviewer sees, decisions.

Two queues: ``priority`` (what ``ipvi review export`` writes, in its order: pairs touching a
tier's records first, then the most uncertain) and ``sample`` (the last run's random accuracy
sample, :mod:`linkage.accuracy`, in the order it was drawn).

A pair handed to a reviewer is *leased* to them for ``lease_seconds`` (``review_leases``), so
two reviewers never get the same pair at once; taking a lease is a conditional insert, safe
across processes on SQLite and PostgreSQL alike. A decision is accepted from the holder of the
pair's lease (even once it expired, while no one else took the pair), recorded exactly as
``ipvi review import`` records it (status ``decided``, decision, reviewer, decided_at; plus the
note) and binds the next ``ipvi link``. A stale lease, a pair decided already, and a pair that
a new linkage run removed from the queue are each refused with a message saying so
(:class:`ReviewConflict`); nothing is recorded twice.

What a reviewer sees (:func:`pair_view`): the two records' names, date of birth, sex, city and
zip, never a victim's (a victim's mention shows ``withheld``) and never a confidential address
(``withheld``); every comparison's level and weight as a waterfall from the prior; the other
records of each side's person; and what a decision would change (a merge or a split).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ipvi.errors import IpviError
from ipvi.tables.ingest import events, mentions
from ipvi.tables.linkage import (
    REVIEW_QUEUE_ORDER,
    crosswalk,
    linkage_runs,
    review_leases,
    review_pairs,
    review_sample,
)
from linkage.review import ADDRESS_FIELDS, DECISIONS, current_run

QUEUES: tuple[str, ...] = ("priority", "sample")
ACTIONS: frozenset[str] = DECISIONS | {"skip"}
SHOWN_FIELDS: tuple[str, ...] = (
    "first_name",
    "middle_name",
    "last_name",
    "suffix",
    "dob",
    "sex",
    "city",
    "zip",
)
WITHHELD = "withheld"
CONTEXT_RECORDS = 25  # other records of a person listed for context (all are counted)
CANDIDATES = 20  # pairs tried per request when taking a lease

UNKNOWN_PAIR = "unknown pair {pair_id}"
ALREADY_DECIDED = "pair {pair_id} was already decided ({decision}) by {reviewer} at {when}"
REMOVED = (
    "pair {pair_id} is no longer in the review queue: linkage run {run_id} re-linked the "
    "registry and did not queue it again; nothing was recorded"
)
STALE_LEASE = (
    "pair {pair_id} is held by another reviewer now (your hold on it, if you had one, "
    "expired); nothing was recorded"
)
NO_LEASE = "you do not hold pair {pair_id}: open it from the queue first; nothing was recorded"
EXPIRED_NOTE = "your hold had expired, but no one else had taken the pair: decision recorded"


class ReviewConflict(IpviError):
    """A decision that cannot be recorded as sent (the message says why)."""


@dataclass(frozen=True)
class Lease:
    """A pair held by a reviewer until ``expires_at``."""

    pair_id: str
    holder: str
    expires_at: datetime


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _in_queue(session: Session, queue: str):
    """A condition on ``review_pairs`` rows: the pair belongs to ``queue``."""
    if queue == "sample":
        return review_pairs.c.pair_id.in_(
            select(review_sample.c.pair_id).where(review_sample.c.run_id == current_run(session))
        )
    return review_pairs.c.queue == "priority"


def _queue_query(session: Session, queue: str, holder: str, now: datetime):
    """Pending pairs of ``queue`` not kept from ``holder`` by a lease, in review order."""
    leases = review_pairs.outerjoin(
        review_leases, review_leases.c.pair_id == review_pairs.c.pair_id
    )
    if queue == "priority":
        return (
            select(review_pairs.c.pair_id)
            .select_from(leases)
            .where(
                review_pairs.c.status == "pending",
                review_pairs.c.queue == "priority",
                _available(holder, now),
            )
            .order_by(*REVIEW_QUEUE_ORDER)
        )
    if queue == "sample":
        return (
            select(review_pairs.c.pair_id)
            .select_from(
                leases.join(review_sample, review_pairs.c.pair_id == review_sample.c.pair_id)
            )
            .where(
                review_sample.c.run_id == current_run(session),
                review_pairs.c.status == "pending",
                _available(holder, now),
            )
            .order_by(review_sample.c.draw)
        )
    raise IpviError(f"unknown queue {queue!r}: choose one of {', '.join(QUEUES)}")


def progress(session: Session, queue: str) -> dict[str, int]:
    """``pending`` and ``decided`` pairs of a queue (the sample: of the current run's)."""
    if queue == "sample":
        rows = session.execute(
            select(review_pairs.c.status, func.count())
            .select_from(
                review_sample.join(review_pairs, review_pairs.c.pair_id == review_sample.c.pair_id)
            )
            .where(review_sample.c.run_id == current_run(session))
            .group_by(review_pairs.c.status)
        ).all()
    else:
        rows = session.execute(
            select(review_pairs.c.status, func.count())
            .where(review_pairs.c.queue == queue)
            .group_by(review_pairs.c.status)
        ).all()
    counts = dict(rows)
    return {"pending": counts.get("pending", 0), "decided": counts.get("decided", 0)}


def _available(holder: str, now: datetime):
    """A lease row that does not keep the pair from ``holder``."""
    return or_(
        review_leases.c.pair_id.is_(None),
        review_leases.c.expires_at <= now,
        and_(review_leases.c.skipped, review_leases.c.holder != holder),
        and_(review_leases.c.holder == holder, review_leases.c.skipped.is_(False)),
    )


def next_pair(session: Session, *, holder: str, queue: str, lease_seconds: float) -> Lease | None:
    """Lease the next pair of ``queue`` to ``holder`` (their own held pair first), or None.

    A pair leased to someone else and not expired is passed over; so is a pair ``holder``
    skipped, until that skip expires.
    """
    if queue not in QUEUES:
        raise IpviError(f"unknown queue {queue!r}: choose one of {', '.join(QUEUES)}")
    now = _now()
    expires = now + timedelta(seconds=lease_seconds)
    # The holder's own live lease first (reloading shows the same pair): their few lease
    # rows, then those pairs' state (a join would let the planner walk every pending pair).
    mine = (
        session.execute(
            select(review_leases.c.pair_id).where(
                review_leases.c.holder == holder,
                review_leases.c.skipped.is_(False),
                review_leases.c.expires_at > now,
            )
        )
        .scalars()
        .all()
    )
    held = None
    if mine:
        held = session.execute(
            select(review_pairs.c.pair_id)
            .where(
                review_pairs.c.pair_id.in_(mine),
                review_pairs.c.status == "pending",
                _in_queue(session, queue),
            )
            .limit(1)
        ).first()
    if held is not None:
        session.execute(
            update(review_leases)
            .where(review_leases.c.pair_id == held.pair_id)
            .values(expires_at=expires)
        )
        return Lease(held.pair_id, holder, expires)
    candidates = (
        session.execute(_queue_query(session, queue, holder, now).limit(CANDIDATES)).scalars().all()
    )
    for pair in candidates:
        try:
            with session.begin_nested():
                # Only a lease that no longer keeps the pair from this holder is replaced; a
                # live one makes the insert fail (primary key) and the next candidate is tried.
                session.execute(
                    delete(review_leases).where(
                        review_leases.c.pair_id == pair,
                        or_(
                            review_leases.c.expires_at <= now,
                            review_leases.c.holder == holder,
                            review_leases.c.skipped,
                        ),
                    )
                )
                session.execute(
                    insert(review_leases).values(
                        pair_id=pair, holder=holder, expires_at=expires, skipped=False
                    )
                )
        except IntegrityError:
            continue
        return Lease(pair, holder, expires)
    return None


def lease_of(session: Session, pair_id: str, *, holder: str, lease_seconds: float) -> Lease:
    """Lease one named pair to ``holder`` (a link to a pair); a live lease of another reviewer
    or a pair no longer pending is a :class:`ReviewConflict`."""
    lease = _pending_lease(session, pair_id)
    now = _now()
    if lease and lease["holder"] != holder and lease["expires_at"] > now and not lease["skipped"]:
        raise ReviewConflict(
            f"pair {pair_id} is held by another reviewer until {lease['expires_at']:%H:%M:%S} UTC"
        )
    if lease and lease["holder"] == holder and not lease["skipped"] and lease["expires_at"] > now:
        return Lease(pair_id, holder, lease["expires_at"])
    expires = now + timedelta(seconds=lease_seconds)
    session.execute(delete(review_leases).where(review_leases.c.pair_id == pair_id))
    session.execute(
        insert(review_leases).values(
            pair_id=pair_id, holder=holder, expires_at=expires, skipped=False
        )
    )
    return Lease(pair_id, holder, expires)


def _pending_lease(session: Session, pair_id: str):
    """The lease row of a pair (None when unleased), once the pair is known to be pending:
    an unknown, decided or removed pair is a :class:`ReviewConflict` saying which."""
    row = session.execute(
        select(
            review_pairs.c.status,
            review_pairs.c.decision,
            review_pairs.c.reviewer,
            review_pairs.c.decided_at,
        ).where(review_pairs.c.pair_id == pair_id)
    ).first()
    if row is None:
        raise ReviewConflict(UNKNOWN_PAIR.format(pair_id=pair_id))
    if row.status == "decided":
        raise ReviewConflict(
            ALREADY_DECIDED.format(
                pair_id=pair_id,
                decision=row.decision,
                reviewer=row.reviewer,
                when=f"{row.decided_at:%Y-%m-%d %H:%M} UTC",
            )
        )
    if row.status != "pending":
        raise ReviewConflict(REMOVED.format(pair_id=pair_id, run_id=current_run(session)))
    return (
        session.execute(select(review_leases).where(review_leases.c.pair_id == pair_id))
        .mappings()
        .first()
    )


def decide(
    session: Session,
    *,
    pair_id: str,
    holder: str,
    action: str,
    note: str | None = None,
    lease_seconds: float = 600.0,
) -> dict:
    """Record ``holder``'s decision on a pair they lease (``action``: match, non-match,
    unsure, or skip, which records nothing and keeps the pair from them for a lease period).

    Returns
    -------
    dict
        ``pair_id``, ``action``, ``recorded`` (bool) and ``notice`` (a message for the
        reviewer, or None).

    Raises
    ------
    ReviewConflict
        Unknown pair, already decided, removed by a new linkage run, a stale lease, or no
        lease at all.
    """
    if action not in ACTIONS:
        raise IpviError(f"decision {action!r} is not one of {', '.join(sorted(ACTIONS))}")
    lease = _pending_lease(session, pair_id)
    now = _now()
    if lease is None:
        raise ReviewConflict(NO_LEASE.format(pair_id=pair_id))
    if lease["holder"] != holder:
        raise ReviewConflict(STALE_LEASE.format(pair_id=pair_id))
    notice = EXPIRED_NOTE if lease["expires_at"] <= now else None
    if action == "skip":
        session.execute(
            update(review_leases)
            .where(review_leases.c.pair_id == pair_id)
            .values(skipped=True, expires_at=now + timedelta(seconds=lease_seconds))
        )
        return {"pair_id": pair_id, "action": action, "recorded": False, "notice": None}
    done = session.execute(
        update(review_pairs)
        .where(review_pairs.c.pair_id == pair_id, review_pairs.c.status == "pending")
        .values(
            status="decided",
            decision=action,
            reviewer=holder,
            decided_at=now,
            note=(note or "").strip()[:2000] or None,
        )
    )
    if done.rowcount != 1:  # decided by a concurrent request between the check and here
        raise ReviewConflict(
            ALREADY_DECIDED.format(
                pair_id=pair_id, decision="?", reviewer="another request", when="just now"
            )
        )
    session.execute(delete(review_leases).where(review_leases.c.pair_id == pair_id))
    return {"pair_id": pair_id, "action": action, "recorded": True, "notice": notice}


def _shown(row) -> dict:
    """A mention's fields as a reviewer may see them (victims and confidential addresses
    withheld), with its agency, role and event."""
    victim = row["role"] == "victim"
    values = {}
    for name in SHOWN_FIELDS:
        value = row[name]
        if victim or (row["address_confidential"] and name in ADDRESS_FIELDS):
            values[name] = WITHHELD
        elif value is None or value == "":
            values[name] = ""
        else:
            values[name] = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return {
        "record_id": row["record_id"],
        "agency": row["agency"],
        "role": row["role"],
        "victim": victim,
        "event_type": row["event_type"],
        "event_date": None if row["offense_date"] is None else f"{row['offense_date']:%Y-%m-%d}",
        "values": values,
    }


def _prior_weight(session: Session, run_id: str) -> float | None:
    """The log2 prior odds of the run that scored the pair (read from its stored parameters
    inside the database: the whole parameters document is not needed)."""
    prior = session.execute(
        select(linkage_runs.c.parameters[("model", "prior")].as_float()).where(
            linkage_runs.c.run_id == run_id
        )
    ).scalar()
    if not prior:
        return None
    return float(math.log2(prior) - math.log2(1 - prior))


def pair_view(session: Session, pair_id: str) -> dict:
    """Everything the review page shows for one pair (see the module docstring).

    Returns
    -------
    dict
        ``pair`` (ids, probability, weight, status, queue), ``records`` (the two, shown as
        a reviewer may see them), ``persons`` (each side's person id, record count and up to
        CONTEXT_RECORDS other records), ``waterfall`` (prior weight and one step per
        comparison: level label and weight, None when withheld) and ``change`` (what a match
        or a non-match would do: merge two persons, split one, or nothing).
    """
    pair = (
        session.execute(select(review_pairs).where(review_pairs.c.pair_id == pair_id))
        .mappings()
        .first()
    )
    if pair is None:
        raise ReviewConflict(UNKNOWN_PAIR.format(pair_id=pair_id))
    a, b = pair["record_id_a"], pair["record_id_b"]
    person_of = dict(
        session.execute(
            select(crosswalk.c.record_id, crosswalk.c.person_id).where(
                crosswalk.c.record_id.in_([a, b])
            )
        ).all()
    )
    person_ids = [p for p in dict.fromkeys([person_of.get(a), person_of.get(b)]) if p]
    members = session.execute(
        select(crosswalk.c.person_id, crosswalk.c.record_id)
        .where(crosswalk.c.person_id.in_(person_ids))
        .order_by(crosswalk.c.record_id)
    ).all()
    by_person: dict[str, list[str]] = {p: [] for p in person_ids}
    for person, record in members:
        by_person[person].append(record)
    context = {
        p: [r for r in records if r not in (a, b)][:CONTEXT_RECORDS]
        for p, records in by_person.items()
    }
    wanted = [a, b, *(r for records in context.values() for r in records)]
    rows = (
        session.execute(
            select(
                mentions.c.record_id,
                mentions.c.agency,
                mentions.c.role,
                mentions.c.address_confidential,
                *(mentions.c[name] for name in SHOWN_FIELDS),
                events.c.event_type,
                events.c.offense_date,
            )
            .select_from(mentions.outerjoin(events, events.c.event_id == mentions.c.event_id))
            .where(mentions.c.record_id.in_(wanted))
        )
        .mappings()
        .all()
    )
    shown = {row["record_id"]: _shown(row) for row in rows}
    steps = [
        (
            item["level"] if item["weight"] is not None else f"{name}: {item['level']}",
            item["weight"],
        )
        for name, item in (pair["evidence"] or {}).items()
        if item["weight"] is None or item["weight"] != 0
    ]
    side_a, side_b = person_of.get(a), person_of.get(b)
    if side_a and side_b and side_a != side_b:
        change = {
            "kind": "merge",
            "on": "match",
            "persons": [side_a, side_b],
            "records": [len(by_person[side_a]), len(by_person[side_b])],
        }
    elif side_a and side_a == side_b:
        change = {
            "kind": "split",
            "on": "non-match",
            "persons": [side_a],
            "records": [len(by_person[side_a])],
        }
    else:
        change = {"kind": "none", "on": None, "persons": person_ids, "records": []}
    return {
        "pair": {
            "pair_id": pair_id,
            "record_id_a": a,
            "record_id_b": b,
            "match_probability": pair["match_probability"],
            "match_weight": pair["match_weight"],
            "status": pair["status"],
            "queue": pair["queue"],
            "linkage_run_id": pair["linkage_run_id"],
            "evidence": pair["evidence"] or {},
        },
        "records": [shown.get(a), shown.get(b)],
        "persons": [
            {
                "person_id": p,
                "records": len(by_person[p]),
                "others": [shown[r] for r in context[p] if r in shown],
            }
            for p in person_ids
        ],
        "waterfall": {"prior": _prior_weight(session, pair["linkage_run_id"]), "steps": steps},
        "change": change,
    }
