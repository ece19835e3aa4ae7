"""Staff decisions: what was done for a person, next to the tier, recorded idempotently.

A decision records the action, whether the rule tier was followed or overridden (with a reason),
and whether a victim advocate contacted the victim before an offender notification: notifying an
offender before the victim is safe can put her at risk, so that case is recorded with a warning.
The client's ``decision_id`` makes a retry a no-op; reusing it for a different decision is a
conflict. Rows hold pseudonymous ids only and are exempt from purge.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy import exc, insert, select
from sqlalchemy.orm import Session

from ipvi.config import DecisionAction
from ipvi.tables.serving import decisions
from serving.http import ApiError
from serving.schemas import DecisionRequest

NO_ADVOCATE_WARNING = (
    "no advocate contact with the victim was recorded before this offender notification: "
    "check the victim's safety plan first"
)
OVERRIDE_NEEDS_REASON = "a reason is required when the tier is overridden"
DECISION_ID_REUSED = "decision_id {decision_id!r} was already used for a different decision"


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


def check_decision(request: DecisionRequest, actions: Mapping[str, DecisionAction]) -> None:
    """Reject a decision the configuration does not allow (422 naming the field)."""
    if request.action not in actions:
        raise ApiError(
            422,
            f"unknown action {request.action!r}: choose one of {', '.join(sorted(actions))}",
            field="action",
        )
    if request.tier_decision == "overridden" and not (request.reason or "").strip():
        raise ApiError(422, OVERRIDE_NEEDS_REASON, field="reason")


def record_decision(
    session: Session,
    request: DecisionRequest,
    *,
    key_name: str,
    actions: Mapping[str, DecisionAction],
) -> dict:
    """Store ``request`` once; a retry with the same body returns the stored decision.

    Returns the fields of :class:`~serving.schemas.DecisionResponse` but the model version.

    Raises
    ------
    ApiError
        422 for an unknown action or an override without reason; 409 when ``decision_id`` was
        used for a different decision.
    """
    check_decision(request, actions)
    payload_hash = _payload_hash(request)
    stored = _stored(session, request.decision_id)
    if stored is None:
        now = _now()
        warnings = decision_warnings(request, actions)
        decided_at = request.decided_at or now
        if decided_at.tzinfo is not None:
            decided_at = decided_at.astimezone(UTC).replace(tzinfo=None)
        try:
            with session.begin_nested():
                session.execute(
                    insert(decisions).values(
                        decision_id=request.decision_id,
                        person_id=request.person_id,
                        action=request.action,
                        tier_decision=request.tier_decision,
                        tier=request.tier,
                        reason=request.reason,
                        advocate_contacted_before_notification=(
                            request.advocate_contacted_before_notification
                        ),
                        warnings=warnings,
                        key_name=key_name,
                        decided_at=decided_at,
                        recorded_at=now,
                        payload_hash=payload_hash,
                    )
                )
            return {
                "decision_id": request.decision_id,
                "person_id": request.person_id,
                "recorded_at": now,
                "replayed": False,
                "warnings": warnings,
            }
        except exc.IntegrityError:  # a concurrent retry stored it first
            stored = _stored(session, request.decision_id)
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


def _stored(session: Session, decision_id: str):
    return session.execute(select(decisions).where(decisions.c.decision_id == decision_id)).first()
