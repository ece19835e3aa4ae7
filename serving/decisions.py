"""Staff decisions: what was done for a person, next to the tier, recorded idempotently.

A decision records the action, whether the rule tier was followed or overridden (with a reason),
and whether a victim advocate contacted the victim before an offender notification: notifying an
offender before the victim is safe can put her at risk, so that case is recorded with a warning.
The client's ``decision_id`` makes a retry a no-op; reusing it for a different decision is a
conflict. A decision names a person the registry holds now (a merged id is recorded under its
survivor; an unknown or purged id is refused) and a ``decided_at`` that is not in the future.
When a person is purged, their decisions stay as the record of what staff did, but the person
id gives way to the purge's tombstone and the free-text reason is removed (:func:`purge_step`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ipvi.config import DecisionAction
from ipvi.purge import PurgeTarget
from ipvi.tables.linkage import person_id_changes
from ipvi.tables.serving import decisions
from linkage.person_ids import SPLIT, UNKNOWN, resolve_person_ids
from serving.http import ApiError
from serving.schemas import DecisionRequest

NO_ADVOCATE_WARNING = (
    "no advocate contact with the victim was recorded before this offender notification: "
    "check the victim's safety plan first"
)
OVERRIDE_NEEDS_REASON = "a reason is required when the tier is overridden"
DECISION_ID_REUSED = "decision_id {decision_id!r} was already used for a different decision"
UNKNOWN_PERSON = "unknown person id (never in the registry, or purged)"
SPLIT_PERSON = "this person id was split; record the decision under one of the new ids"
FUTURE_DECISION = "decided_at is in the future (later than now plus {skew:g} s of clock skew)"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _payload_hash(request: DecisionRequest) -> str:
    payload = request.model_dump(mode="json", exclude={"decided_at"})
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def decision_warnings(request: DecisionRequest, actions: Mapping[str, DecisionAction]) -> list[str]:
    """Warnings to record with ``request`` (the advocate-contact check)."""
    notifies = actions[request.action].notifies_offender
    if notifies and request.advocate_contacted_before_notification is not True:
        return [NO_ADVOCATE_WARNING]
    return []


def check_decision(
    request: DecisionRequest,
    actions: Mapping[str, DecisionAction],
    *,
    now: datetime,
    clock_skew_seconds: float,
) -> None:
    """Reject a decision the configuration does not allow, or one decided after ``now`` (plus
    the clock skew allowed between the caller and the service): 422 naming the field."""
    if request.decided_at is not None:
        decided = request.decided_at
        if decided.tzinfo is not None:
            decided = decided.astimezone(UTC).replace(tzinfo=None)
        if (decided - now).total_seconds() > clock_skew_seconds:
            raise ApiError(422, FUTURE_DECISION.format(skew=clock_skew_seconds), field="decided_at")
    if request.action not in actions:
        raise ApiError(
            422,
            f"unknown action {request.action!r}: choose one of {', '.join(sorted(actions))}",
            field="action",
        )
    if request.tier_decision == "overridden" and not (request.reason or "").strip():
        raise ApiError(422, OVERRIDE_NEEDS_REASON, field="reason")


def current_person(session: Session, person_id: str) -> str:
    """The person id a decision is recorded under: ``person_id`` itself or, for a merged id,
    its survivor; 404 for an id the registry does not hold (never did, or purged), 409 for a
    split one."""
    found = resolve_person_ids(session, [person_id])[person_id]
    if found.status == UNKNOWN:
        raise ApiError(404, UNKNOWN_PERSON, field="person_id")
    if found.status == SPLIT:
        raise ApiError(
            409,
            SPLIT_PERSON,
            field="person_id",
            extra={"successor_ids": list(found.successor_ids)},
        )
    return found.person_id


def record_decision(
    session: Session,
    request: DecisionRequest,
    *,
    key_name: str,
    actions: Mapping[str, DecisionAction],
    clock_skew_seconds: float,
) -> dict:
    """Store ``request`` once; a retry with the same body returns the stored decision.

    Returns the fields of :class:`~serving.schemas.DecisionResponse` but the model version.

    Raises
    ------
    ApiError
        422 for an unknown action, an override without reason or a future ``decided_at``;
        404 for a person the registry does not hold; 409 when ``decision_id`` was used for a
        different decision, or the person id was split.
    """
    now = _now()
    check_decision(request, actions, now=now, clock_skew_seconds=clock_skew_seconds)
    payload_hash = _payload_hash(request)
    stored = _stored(session, request.decision_id)
    if stored is None:
        person_id = current_person(session, request.person_id)
        warnings = decision_warnings(request, actions)
        decided_at = request.decided_at or now
        if decided_at.tzinfo is not None:
            decided_at = decided_at.astimezone(UTC).replace(tzinfo=None)
        values = {
            "decision_id": request.decision_id,
            "person_id": person_id,
            "action": request.action,
            "tier_decision": request.tier_decision,
            "tier": request.tier,
            "reason": request.reason,
            "advocate_contacted_before_notification": (
                request.advocate_contacted_before_notification
            ),
            "warnings": warnings,
            "key_name": key_name,
            "decided_at": decided_at,
            "recorded_at": now,
            "payload_hash": payload_hash,
        }
        if _insert_once(session, values):
            return {
                "decision_id": request.decision_id,
                "person_id": person_id,
                "recorded_at": now,
                "replayed": False,
                "warnings": warnings,
            }
        stored = _stored(session, request.decision_id)  # a concurrent retry stored it first
    if stored.payload_hash != payload_hash:
        raise ApiError(
            409, DECISION_ID_REUSED.format(decision_id=request.decision_id), field="decision_id"
        )
    return {
        "decision_id": stored.decision_id,
        "person_id": stored.person_id,
        "recorded_at": stored.recorded_at,
        "replayed": True,
        "warnings": list(stored.warnings),
    }


_DIALECT_INSERT = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def _insert_once(session: Session, values: dict) -> bool:
    """Insert the decision unless its id is stored (by a concurrent retry); whether it was.

    ``ON CONFLICT DO NOTHING`` rather than a savepoint: on SQLite (pysqlite) releasing a
    savepoint that began the transaction commits it, before the service knows whether the
    request will still be answered (:class:`serving.runtime.DatabaseGuard`).
    """
    insert = _DIALECT_INSERT[session.get_bind().dialect.name]
    statement = (
        insert(decisions)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["decision_id"])
        .returning(decisions.c.decision_id)
    )
    return session.execute(statement).first() is not None


def _stored(session: Session, decision_id: str):
    return session.execute(select(decisions).where(decisions.c.decision_id == decision_id)).first()


def purge_step(session: Session, target: PurgeTarget) -> dict[str, int]:
    """Decisions' part of ``ipvi purge``: the person's decisions stay (what staff did is kept
    for oversight) but name the tombstone (``purged:<id>``) instead of the person, and lose
    their free-text reason. The ids merged into the person count as the person."""
    if not target.person_id:
        return {"decisions_pseudonymised": 0}
    merged = session.execute(
        select(person_id_changes.c.retired_id).where(
            person_id_changes.c.successor_id == target.person_id,
            person_id_changes.c.kind == "merge",
        )
    ).scalars()
    ids = [target.person_id, *merged]
    changed = session.execute(
        update(decisions)
        .where(decisions.c.person_id.in_(ids))
        .values(person_id=f"purged:{target.tombstone_id}", reason=None)
    ).rowcount
    return {"decisions_pseudonymised": int(changed or 0)}
