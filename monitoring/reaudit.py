"""The fairness audit re-run on issued scores with their matured outcomes.

:func:`audit_matured` is the one path: the audit of ``ipvi audit --model-version`` (same
input, report, gate and JSON), on matured issued scores instead of training's test period.
``ipvi monitor`` shows its summary (:func:`summary`); ``ipvi audit --issued`` runs it on the
scores issued since a date (:func:`audit_issued`) and records it (:func:`record_reaudit`): in
``reaudits`` and as tags on the MLflow version, so that a failure blocks promotion and warns on
every score the service answers until a later re-audit passes (:mod:`ipvi.reaudits`).
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fairness.audit import AuditResult, run_audit
from fairness.inputs import model_version_input
from fairness.policy import policy_changes, policy_hash
from fairness.promotion import tag_reaudit
from fairness.store import mention_attributes
from ipvi.config import Config
from ipvi.db import session_scope
from ipvi.errors import IpviError
from ipvi.reaudits import REAUDIT_FAIL, REAUDIT_PASS, save_reaudit
from ipvi.tables.ingest import events
from monitoring.outcomes import matured_outcomes, no_matured_message, read_issued
from training.registry import frozen_bands

SINCE_AFTER_EXTRACT = (
    "--since {since} is after the extract date {extract}: no score issued since then can have "
    "an outcome yet"
)
NO_EVENTS = "the registry holds no events: there is no extract date to know outcomes by"
NONE_SINCE = (
    "model version {version} issued no score from {since} to the extract date {extract}: "
    "nothing to re-audit"
)
# The model inputs the audit reads besides the scores (its age bands and prior-offence strata).
_AUDITED_INPUTS = ("prior_ipv_offences", "age")


def audit_matured(
    matured: pd.DataFrame,
    mentions: pd.DataFrame,
    config: Config,
    version: str,
    *,
    bands: list[dict] | None,
    source: dict | None = None,
) -> AuditResult:
    """The fairness audit of matured issued scores, as ``ipvi audit`` runs it on a version.

    ``matured`` holds one row per offence with ``person_id``, ``index_event_id``,
    ``probability``, ``band``, ``band_use``, ``tier``, ``scorecard_points``, ``features``
    and ``label``; each person's protected attributes are joined by the audit itself, from
    ``mentions`` (:func:`fairness.store.mention_attributes`).
    ``bands`` are the version's as frozen in MLflow (:func:`training.registry.frozen_bands`;
    None: read off the scores). ``source`` adds to the audit JSON's ``source`` (what was
    audited).
    """
    policy = config.fairness_policy
    # In person order: the same matured rows give the same audit, however they were issued.
    matured = matured.sort_values(["person_id", "index_event_id"]).reset_index(drop=True)
    matured = matured.drop(columns=[c for c in policy.attributes if c in matured.columns])
    predictions = matured.assign(
        run_id="issued",
        model_version=version,
        **{name: matured["features"].map(lambda f, n=name: f.get(n)) for name in _AUDITED_INPUTS},
    )
    inp = model_version_input(
        predictions,
        mentions,
        policy,
        model_version=version,
        model_name=config.mlflow.model_name,
        bands=bands,
    )
    inp.source.update({"kind": "issued_scores", **(source or {})})
    return run_audit(inp, policy, policy_digest=policy_hash(policy), changes=policy_changes(policy))


def summary(result: AuditResult) -> dict:
    """The re-audit as the monitor's JSON shows it (``reaudit``)."""
    payload = result.payload
    return {
        "audit_id": payload["audit_id"],
        "n_rows": payload["n_rows"],
        "n_persons": payload["n_persons"],
        "primary_decision": payload["primary_decision"],
        "overall": payload["decisions"][payload["primary_decision"]]["overall"],
        "worst_gaps": payload["worst_gaps"],
        "warnings": payload["warnings"],
        "gate": payload["gate"],
    }


def extract_date(session: Session, config: Config) -> pd.Timestamp:
    """The registry's extract date, as training takes it: ``training.extract_date``, else the
    last day any agency recorded an event."""
    if config.training.extract_date:
        return pd.Timestamp(config.training.extract_date)
    latest = session.execute(select(func.max(events.c.recorded_at))).scalar()
    if latest is None:
        raise IpviError(NO_EVENTS)
    return pd.Timestamp(latest)


def audit_issued(
    engine,
    config: Config,
    *,
    since,
    as_of=None,
    model_version: str | None = None,
) -> AuditResult:
    """The re-audit of the offences ``model_version`` (default: the latest that served)
    first scored from ``since`` on, whose outcomes matured by ``as_of`` (default: the
    registry's extract date, :func:`extract_date`). Writes nothing.

    Raises
    ------
    IpviError
        ``since`` after the extract date; a version that never served; no score issued since
        ``since``; no outcome matured yet.
    """
    start = pd.Timestamp(since)
    with session_scope(engine) as session:
        extract = pd.Timestamp(as_of) if as_of is not None else extract_date(session, config)
        if start > extract:
            raise IpviError(SINCE_AFTER_EXTRACT.format(since=start.date(), extract=extract.date()))
        issued, version = read_issued(session, until=extract, model_version=model_version)
    issued = issued[issued["as_of"] >= start].reset_index(drop=True)
    if issued.empty:
        raise IpviError(
            NONE_SINCE.format(version=version, since=start.date(), extract=extract.date())
        )
    outcomes = matured_outcomes(engine, issued, config, extract_date=extract)
    matured = outcomes.matured
    if matured.empty:
        raise IpviError(no_matured_message(outcomes, config, version, extract))
    audited = {"since": str(start.date()), "as_of": str(extract.date()), **outcomes.counts}
    with session_scope(engine) as session:
        mentions = mention_attributes(session, config.fairness_policy.attributes)
    bands = frozen_bands(config.tracking_uri, config.mlflow.model_name, version)
    return audit_matured(matured, mentions, config, version, bands=bands, source=audited)


def record_reaudit(engine, config: Config, result: AuditResult) -> dict:
    """Keep a re-audit: a row of ``reaudits`` and, when it reached a verdict (pass or fail:
    the version's new standing), tags on the MLflow version (``reaudit_status``,
    ``reaudit_id``, ``reaudit_at``). Returns the tags set."""
    source = result.payload["source"]
    with session_scope(engine) as session:
        save_reaudit(
            session,
            result.payload,
            since=pd.Timestamp(source["since"]).to_pydatetime(),
            as_of=pd.Timestamp(source["as_of"]).to_pydatetime(),
        )
    if result.status not in (REAUDIT_PASS, REAUDIT_FAIL):
        return {}
    return tag_reaudit(
        config.tracking_uri,
        config.mlflow.model_name,
        str(source["model_version"]),
        reaudit_id=result.audit_id,
        status=result.status,
    )
