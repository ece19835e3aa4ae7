"""Promotion through the fairness gate: the only way the ``champion`` alias moves.

A version may become champion only when its latest audit passed the gate, and that audit was
made on the data the registry holds now (same data fingerprint) under the policy in force now
(same policy hash), and its latest re-audit on matured outcomes (``ipvi audit --issued``,
:mod:`ipvi.reaudits`), if any, did not fail. Anything else refuses, with every reason;
``force`` overrides with a reason a person gives, which is recorded in ``promotions`` and on
the MLflow version and run.

:func:`promote` is the whole workflow (``ipvi promote`` parses its options, calls it and prints
the outcome): check, record a refusal, or attach the audit to the version's run, move the alias
(:func:`set_champion`) and record the promotion.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from fairness import store
from fairness.gate import PASS
from fairness.model_version import current_fingerprint
from fairness.report import render_html
from ipvi.config import FairnessPolicy
from ipvi.errors import IpviError
from ipvi.reaudits import REAUDIT_FAIL, standing

AUDIT_ARTIFACT_DIR = "fairness_audit"
CHAMPION = "champion"
REAUDIT_REFUSAL = (
    "version {version} failed its fairness re-audit {reaudit_id} on matured outcomes (run "
    "{created}): it may be promoted again after a passing re-audit "
    "(`ipvi audit --issued --since DATE --model-version {version}`)"
)


@dataclass
class PromotionCheck:
    """Whether a version may be promoted, the audit it rests on, and why not."""

    allowed: bool
    audit: dict[str, Any] | None
    reasons: list[str] = field(default_factory=list)

    @property
    def audit_id(self) -> str | None:
        return self.audit["audit_id"] if self.audit else None


def check_promotion(
    session: Session,
    model_version: str,
    *,
    policy: FairnessPolicy,
    digest: str,
    model_name: str,
) -> PromotionCheck:
    """Check the latest audit of ``model_version`` against the gate, data and policy now,
    and its re-audit standing on matured outcomes."""
    refusals = _reaudit_refusal(session, model_version)
    audit = store.latest_audit(session, model_version)
    if audit is None:
        return PromotionCheck(
            False,
            None,
            [
                *refusals,
                f"version {model_version} has no audit: run `ipvi audit --model-version V`",
            ],
        )
    # A failed re-audit first: it is why an otherwise cleared version is refused.
    reasons = list(refusals)
    if audit["model_version"] != str(model_version):
        reasons.append(f"the audit is of version {audit['model_version']}, not {model_version}")
    if audit["status"] != PASS:
        reasons.append(f"audit {audit['audit_id']} did not pass the gate ({audit['status']})")
        reasons += [f"  - {reason}" for reason in audit["reasons"]]
    if audit["policy_hash"] != digest:
        reasons.append(
            f"the fairness policy changed since audit {audit['audit_id']} "
            f"({audit['policy_hash'][:12]} then, {digest[:12]} now): audit again"
        )
    try:
        fingerprint = current_fingerprint(
            session, model_version, policy=policy, model_name=model_name
        )
    except IpviError as error:
        fingerprint = None
        reasons.append(f"cannot recompute the audited data: {error}")
    if fingerprint is not None and fingerprint != audit["data_fingerprint"]:
        reasons.append(
            f"the evaluation data or protected attributes changed since audit "
            f"{audit['audit_id']}: audit again"
        )
    return PromotionCheck(not reasons, audit, reasons)


def _reaudit_refusal(session: Session, model_version: str) -> list[str]:
    """Why the version's re-audit standing refuses it (a failed re-audit), or nothing."""
    reaudit = standing(session, model_version)
    if reaudit is None or reaudit["status"] != REAUDIT_FAIL:
        return []
    return [
        REAUDIT_REFUSAL.format(
            version=model_version,
            reaudit_id=reaudit["reaudit_id"],
            created=reaudit["created_at"].date(),
        )
    ]


def _client(tracking_uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _model_version(client, model_name: str, version: str):
    """The registry's entry of ``version``; IpviError when there is none."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(model_name, str(version))
    except MlflowException:
        raise IpviError(
            f"model {model_name!r} has no version {version!r} in the registry"
        ) from None


def version_run_id(tracking_uri: str, model_name: str, version: str) -> str | None:
    """The MLflow run that produced a registered model version."""
    return _model_version(_client(tracking_uri), model_name, version).run_id


def log_audit_to_run(tracking_uri: str, run_id: str, audit_json: str) -> list[str]:
    """Log an audit's JSON and its HTML report to an MLflow run; returns the artifact paths."""
    payload = json.loads(audit_json)
    client = _client(tracking_uri)
    names = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        stem = f"audit-{payload['audit_id']}"
        (folder / f"{stem}.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
        (folder / f"{stem}.html").write_text(render_html(payload), encoding="utf-8")
        for path in sorted(folder.iterdir()):
            client.log_artifact(run_id, str(path), AUDIT_ARTIFACT_DIR)
            names.append(f"{AUDIT_ARTIFACT_DIR}/{path.name}")
    return names


def tag_reaudit(
    tracking_uri: str, model_name: str, version: str, *, reaudit_id: str, status: str
) -> dict[str, str]:
    """Tag a model version with the verdict of its latest re-audit on matured outcomes
    (:func:`ipvi.reaudits.standing`): ``reaudit_status`` (``pass`` or ``fail``),
    ``reaudit_id`` and ``reaudit_at``.

    Returns
    -------
    dict
        The tags set.
    """
    client = _client(tracking_uri)
    mv = _model_version(client, model_name, version)
    tags = {
        "reaudit_status": status,
        "reaudit_id": reaudit_id,
        "reaudit_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    for key, value in tags.items():
        client.set_model_version_tag(model_name, str(mv.version), key, value)
    return tags


def set_champion(
    model_name: str,
    version: str,
    *,
    reason: str | None = None,
    forced: bool = False,
    audit_id: str | None = None,
    audit_status: str | None = None,
    tracking_uri: str,
) -> dict:
    """Point the ``champion`` alias at ``version``, recording why on the version and its run.

    Parameters
    ----------
    forced : bool
        Promotion without a passing fairness audit; needs a ``reason``.
    audit_id, audit_status : str, optional
        The fairness audit that cleared (or was overridden for) this version.

    Returns
    -------
    dict
        ``model_name``, ``version``, ``previous`` (the former champion version or None),
        ``run_id``, ``promoted_at``.
    """
    from mlflow.exceptions import MlflowException

    if forced and not (reason and reason.strip()):
        raise IpviError("a forced promotion needs --reason TEXT")
    client = _client(tracking_uri)
    mv = _model_version(client, model_name, version)
    try:
        previous = client.get_model_version_by_alias(model_name, CHAMPION).version
    except MlflowException:  # no champion yet
        previous = None
    promoted_at = datetime.now(UTC).isoformat(timespec="seconds")
    record = {
        "promoted_at": promoted_at,
        "promotion_forced": str(bool(forced)).lower(),
        "promotion_reason": reason or "",
        "audit_id": audit_id or "",
        "audit_status": audit_status or "",
    }
    for key, value in record.items():
        client.set_model_version_tag(model_name, str(mv.version), key, value)
        if mv.run_id:
            client.set_tag(mv.run_id, f"champion_{key}", value)
    client.set_registered_model_alias(model_name, CHAMPION, str(mv.version))
    return {
        "model_name": model_name,
        "version": str(mv.version),
        "previous": previous,
        "run_id": mv.run_id,
        "promoted_at": promoted_at,
    }


@dataclass(frozen=True)
class PromotionOutcome:
    """What :func:`promote` did: ``outcome`` is ``promoted``, ``forced`` or ``refused``.

    ``reasons`` are why the gate refused (for ``forced``: what was overridden); ``previous``
    is the former champion and ``artifacts`` the audit files logged to the version's run.
    """

    model_name: str
    version: str
    outcome: str
    reasons: list[str]
    audit_id: str | None
    audit_status: str | None = None
    previous: str | None = None
    artifacts: list[str] = field(default_factory=list)

    @property
    def forced(self) -> bool:
        return self.outcome == "forced"


def promote(
    session: Session,
    version: str,
    *,
    policy: FairnessPolicy,
    digest: str,
    model_name: str,
    tracking_uri: str,
    force: bool = False,
    reason: str | None = None,
) -> PromotionOutcome:
    """Make ``version`` the champion if its audit allows it (or ``force`` with a ``reason``).

    A refusal is recorded in ``promotions`` (in ``session``, which the caller commits) and
    returned, not raised, so that the record survives; the champion does not move. Otherwise
    the audit is logged to the version's MLflow run, the alias moves (:func:`set_champion`)
    and the promotion is recorded.

    Raises
    ------
    IpviError
        ``force`` without a reason, or a version the registry does not hold.
    """
    if force and not (reason and reason.strip()):
        raise IpviError("--force requires --reason TEXT")
    check = check_promotion(session, version, policy=policy, digest=digest, model_name=model_name)
    if not check.allowed and not force:
        store.record_promotion(
            session,
            model_version=version,
            audit_id=check.audit_id,
            outcome="refused",
            reason="; ".join(check.reasons),
            previous_champion=None,
        )
        return PromotionOutcome(model_name, str(version), "refused", check.reasons, check.audit_id)
    run_id = version_run_id(tracking_uri, model_name, version)
    artifacts = (
        log_audit_to_run(tracking_uri, run_id, check.audit["audit_json"])
        if check.audit and run_id
        else []
    )
    forced = not check.allowed
    audit_status = "forced" if forced else check.audit["status"]
    moved = set_champion(
        model_name,
        version,
        reason=reason,
        forced=forced,
        audit_id=check.audit_id,
        audit_status=audit_status,
        tracking_uri=tracking_uri,
    )
    outcome = "forced" if forced else "promoted"
    store.record_promotion(
        session,
        model_version=version,
        audit_id=check.audit_id,
        outcome=outcome,
        reason=reason,
        previous_champion=moved["previous"],
    )
    return PromotionOutcome(
        model_name,
        str(version),
        outcome,
        check.reasons,
        check.audit_id,
        audit_status=audit_status,
        previous=moved["previous"],
        artifacts=artifacts,
    )
