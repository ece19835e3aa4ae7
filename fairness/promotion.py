"""What ``ipvi promote`` checks before the ``champion`` alias may move, and what it records.

A version may become champion only when its latest audit passed the gate, and that audit was
made on the data the registry holds now (same data fingerprint) under the policy in force now
(same policy hash). Anything else refuses, with every reason; ``--force`` overrides with a
reason a person gives, which is recorded in ``promotions`` and on the MLflow version and run.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from fairness import store
from fairness.gate import PASS
from fairness.model_version import current_fingerprint
from fairness.report import render_html
from ipvi.config import FairnessPolicy
from ipvi.errors import IpviError

AUDIT_ARTIFACT_DIR = "fairness_audit"


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
    """Check the latest audit of ``model_version`` against the gate, data and policy now."""
    audit = store.latest_audit(session, model_version)
    if audit is None:
        return PromotionCheck(
            False,
            None,
            [f"version {model_version} has no audit: run `ipvi audit --model-version V`"],
        )
    reasons = []
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


def version_run_id(tracking_uri: str, model_name: str, version: str) -> str | None:
    """The MLflow run that produced a registered model version."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        return client.get_model_version(model_name, str(version)).run_id
    except MlflowException:
        raise IpviError(
            f"model {model_name!r} has no version {version!r} in the registry"
        ) from None


def log_audit_to_run(tracking_uri: str, run_id: str, audit_json: str) -> list[str]:
    """Log an audit's JSON and its HTML report to an MLflow run; returns the artifact paths."""
    from mlflow import MlflowClient

    payload = json.loads(audit_json)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
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
