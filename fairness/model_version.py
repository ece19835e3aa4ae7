"""Audit one model version from the registry, and recompute what promotion must match.

``audit_model_version`` reads the version's evaluation predictions, joins each person's
protected attributes (majority over their linked mentions), runs the audit, adds the
label-bias and linkage sections when truth is requested, and stores the audit.
``current_fingerprint`` recomputes the data fingerprint so ``ipvi promote`` can refuse an audit
made on data that has since changed.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from fairness import store
from fairness import truth as truth_sections
from fairness.audit import AuditInput, AuditResult, run_audit
from fairness.inputs import model_version_input
from ipvi.config import FairnessPolicy
from ipvi.errors import IpviError


def build_input(
    session: Session,
    model_version: str,
    *,
    policy: FairnessPolicy,
    model_name: str,
    bands: list[dict] | None = None,
) -> AuditInput:
    """The audit input of a model version, from the registry."""
    predictions = store.model_version_predictions(session, model_version)
    mentions = store.mention_attributes(session, policy.attributes)
    return model_version_input(
        predictions,
        mentions,
        policy,
        model_version=model_version,
        model_name=model_name,
        bands=bands,
    )


def current_fingerprint(
    session: Session, model_version: str, *, policy: FairnessPolicy, model_name: str
) -> str:
    """The fingerprint an audit of this version would carry if it were run now."""
    inp = build_input(session, model_version, policy=policy, model_name=model_name)
    return inp.source["fingerprint"]


def audit_model_version(
    session: Session,
    model_version: str,
    *,
    policy: FairnessPolicy,
    digest: str,
    changes: dict,
    model_name: str,
    bands: list[dict] | None = None,
    with_truth: bool = False,
) -> AuditResult:
    """Audit a model version, add the truth sections if asked, and store the audit."""
    inp = build_input(session, model_version, policy=policy, model_name=model_name, bands=bands)
    result = run_audit(inp, policy, policy_digest=digest, changes=changes)
    if with_truth:
        truth = store.evaluation_truth(session, inp.source["run_ids"])
        frame = inp.frame.assign(
            run_id=inp.frame["run_id"].astype(str),
            index_event_id=inp.frame["index_event_id"].astype(str),
        )
        truth = truth.assign(
            run_id=truth["run_id"].astype(str), index_event_id=truth["index_event_id"].astype(str)
        )
        merged = frame.merge(truth, on=["run_id", "index_event_id"], how="inner")
        if merged.empty:
            raise IpviError("evaluation_truth holds no row for this version's predictions")
        primary = inp.decisions[
            [d.id for d in inp.decisions].index(result.payload["primary_decision"])
        ]
        result.payload["label_bias"] = truth_sections.label_bias(
            merged, policy.attributes, primary.column
        )
        result.payload["label_bias"]["rows_without_truth"] += int(len(frame) - len(merged))
        result.payload["linkage"] = truth_sections.linkage_bias(merged, policy.attributes)
    store.save_audit(session, result)
    return result
