"""Registry I/O of the fairness stage: read what training handed over, keep audits and promotions.

Reads ``evaluation_predictions`` and ``evaluation_truth`` (training), ``crosswalk`` (linkage) and
``mentions`` (ingest) by the names the cross-stage contracts give them; writes ``audits`` and
``promotions`` (:mod:`ipvi.tables.fairness`). Every function takes a session.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import MetaData, String, Table, cast, func, inspect, select
from sqlalchemy.orm import Session

from fairness.audit import AuditResult
from ipvi.errors import IpviError
from ipvi.tables.fairness import audits, promotions

PREDICTION_COLUMNS = (
    "run_id",
    "model_version",
    "index_event_id",
    "person_id",
    "probability",
    "band",
    "band_use",
    "tier",
    "scorecard_points",
    "prior_ipv_offences",
    "age",
    "label",
)
TRUTH_COLUMNS = (
    "run_id",
    "index_event_id",
    "p_recorded",
    "true_reoffense",
    "truth_tier",
    "truth_prior_ipv_offences",
)
MISSING_TABLE = "table {table!r} is not in the registry: {hint}"


def _table(session: Session, name: str, hint: str) -> Table:
    if not inspect(session.connection()).has_table(name):
        raise IpviError(MISSING_TABLE.format(table=name, hint=hint))
    return Table(name, MetaData(), autoload_with=session.connection())


def _columns(table: Table, wanted: Sequence[str]) -> list:
    missing = [c for c in wanted if c not in table.c]
    if missing:
        raise IpviError(f"table {table.name!r} lacks column(s): {', '.join(missing)}")
    return [table.c[c] for c in wanted]


def model_version_predictions(session: Session, model_version: str) -> pd.DataFrame:
    """The evaluation predictions of one model version (training's hand-over)."""
    table = _table(session, "evaluation_predictions", "run `ipvi train` first")
    query = select(*_columns(table, PREDICTION_COLUMNS)).where(
        cast(table.c.model_version, String) == str(model_version)
    )
    frame = pd.read_sql(query, session.connection())
    if frame.empty:
        raise IpviError(
            f"no evaluation_predictions rows for model version {model_version!r}: "
            "was it trained with `ipvi train`?"
        )
    return frame


def mention_attributes(session: Session, attributes: Sequence[str]) -> pd.DataFrame:
    """Protected attributes of linked mentions: ``person_id``, one column each, and
    ``n_mentions``, the number of a person's mentions recording those values (counted in the
    database: a registry has millions of mentions and few distinct values a person)."""
    mentions = _table(session, "mentions", "run `ipvi ingest` first")
    crosswalk = _table(session, "crosswalk", "run `ipvi link` first")
    keys = [crosswalk.c.person_id, *_columns(mentions, attributes)]
    query = (
        select(*keys, func.count().label("n_mentions"))
        .join(crosswalk, crosswalk.c.record_id == mentions.c.record_id)
        .group_by(*keys)
    )
    return pd.read_sql(query, session.connection())


def evaluation_truth(session: Session, run_ids: Sequence[str]) -> pd.DataFrame:
    """Training's truth rows for the given runs (written by ``ipvi train --truth DIR``)."""
    table = _table(session, "evaluation_truth", "run `ipvi train --truth DIR` first")
    query = select(*_columns(table, TRUTH_COLUMNS)).where(
        cast(table.c.run_id, String).in_([str(r) for r in run_ids])
    )
    frame = pd.read_sql(query, session.connection())
    if frame.empty:
        raise IpviError(
            "no evaluation_truth rows for this model's run: train it with `ipvi train --truth DIR`"
        )
    return frame


def save_audit(session: Session, result: AuditResult) -> None:
    """Store a model-version audit."""
    payload = result.to_dict()
    source = payload["source"]
    session.execute(
        audits.insert().values(
            audit_id=result.audit_id,
            model_version=str(source.get("model_version")),
            data_fingerprint=source["fingerprint"],
            policy_hash=payload["policy"]["hash"],
            status=result.status,
            reasons=result.reasons,
            audit_json=json.dumps(payload, sort_keys=True),
            created_at=datetime.now(UTC),
        )
    )


def latest_audit(session: Session, model_version: str) -> dict[str, Any] | None:
    """The most recent audit of a model version, as a row mapping, or None."""
    row = (
        session.execute(
            select(audits)
            .where(audits.c.model_version == str(model_version))
            .order_by(audits.c.created_at.desc(), audits.c.audit_id.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def record_promotion(
    session: Session,
    *,
    model_version: str,
    audit_id: str | None,
    outcome: str,
    reason: str | None,
    previous_champion: str | None,
) -> None:
    """Record one ``ipvi promote`` attempt (promoted, refused or forced)."""
    session.execute(
        promotions.insert().values(
            model_version=str(model_version),
            audit_id=audit_id,
            outcome=outcome,
            reason=reason,
            previous_champion=previous_champion,
            created_at=datetime.now(UTC),
        )
    )
