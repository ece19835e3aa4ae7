"""Re-audits on matured outcomes: where they are kept, and what the latest verdict means.

``ipvi audit --issued`` stores each re-audit in ``reaudits`` (:func:`save_reaudit`). A version's
*standing* is its latest re-audit that reached a verdict (pass or fail; an audit with
insufficient evidence changes nothing): a failed standing blocks ``ipvi promote`` and puts
:func:`score_warning` on every score the service answers for the version, until a later
re-audit passes. It lives in the core because promotion (fairness) and the service (serving)
both read it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ipvi.tables.fairness import reaudits

# The verdicts that set a version's standing (the fairness gate's pass and fail).
REAUDIT_PASS, REAUDIT_FAIL = "pass", "fail"
FAILED_REAUDIT_WARNING = (
    "model version {version} failed its fairness re-audit {reaudit_id} on matured outcomes "
    "(issued since {since}, outcomes known by {as_of}; run {created}): read this score with "
    "that audit's findings in mind"
)


def save_reaudit(
    session: Session, payload: dict[str, Any], *, since: datetime, as_of: datetime
) -> None:
    """Store one re-audit (its audit JSON ``payload``) of the version it names."""
    gate = payload.get("gate") or {}
    source = payload["source"]
    session.execute(
        reaudits.insert().values(
            reaudit_id=payload["audit_id"],
            model_name=str(source["model_name"]),
            model_version=str(source["model_version"]),
            since=since,
            as_of=as_of,
            status=gate.get("status") or "not_gated",
            reasons=list(gate.get("reasons") or []),
            n_rows=int(payload["n_rows"]),
            audit_json=json.dumps(payload, sort_keys=True),
            created_at=datetime.now(UTC),
        )
    )


def standing(session: Session, model_version: str) -> dict[str, Any] | None:
    """The latest re-audit of ``model_version`` with a pass or fail verdict (without its
    audit JSON), or None when there is none."""
    columns = [c for c in reaudits.c if c.name != "audit_json"]
    row = (
        session.execute(
            select(*columns)
            .where(reaudits.c.model_version == str(model_version))
            .where(reaudits.c.status.in_([REAUDIT_PASS, REAUDIT_FAIL]))
            .order_by(reaudits.c.created_at.desc(), reaudits.c.reaudit_id.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def score_warning(found: dict[str, Any] | None) -> str | None:
    """The warning every score of the version carries while its standing is a failed
    re-audit; None otherwise."""
    if found is None or found["status"] != REAUDIT_FAIL:
        return None
    return FAILED_REAUDIT_WARNING.format(
        version=found["model_version"],
        reaudit_id=found["reaudit_id"],
        since=found["since"].date(),
        as_of=found["as_of"].date(),
        created=found["created_at"].date(),
    )
