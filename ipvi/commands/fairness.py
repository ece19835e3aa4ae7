"""CLI commands of the fairness stage: ``ipvi audit`` and ``ipvi promote``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ipvi.commands.context import emit_json, get_config, get_engine, info
from ipvi.errors import IpviError

AUDIT_HELP = """Audit a model version, or any scored file, for fairness by group.

Two forms:

  ipvi audit --model-version V [--truth DIR]

audits the evaluation predictions of version V (written by `ipvi train`) at its band
cut-points, next to the scorecard and the rule tiers, by race, ethnicity, sex, their
intersections and age band; stores the audit and writes JSON and HTML reports.

  ipvi audit --data FILE --label COL (--score COL --threshold T | --prediction COL
  --positive VALUE[,VALUE]) --group COL [--group COL ...] [--reference GROUP | ATTR=GROUP]
  [--policy FILE] [--person COL] [--json OUT] [--html OUT] [--public]

audits any scored CSV or Parquet file; it is gated only when given --policy.

  ipvi audit --issued --since DATE [--model-version V] [--as-of DATE]

re-audits the scores version V (default: the latest that served) issued from DATE on, with
their outcomes matured by --as-of (default: the registry's extract date): the same report,
gate and JSON, kept in `reaudits` and tagged on the MLflow version. While the version's latest
re-audit fails, `ipvi promote` refuses it and every /v1/score answer carries a warning naming
the failed re-audit, until a later re-audit passes.

Exits 0 whenever it wrote its outputs, whatever the verdict (promotion is `ipvi promote`).
"""


def _policy(policy_file: Path | None):
    from fairness.policy import load_policy, policy_changes, policy_hash

    config = get_config()
    if policy_file is None:
        policy = config.fairness_policy
        digest = config.section_hash("fairness_policy")
    else:
        policy = load_policy(policy_file)
        digest = policy_hash(policy)
    return policy, digest, policy_changes(policy)


def _write_outputs(payload: dict, json_out: Path | None, html_out: Path | None) -> dict:
    from fairness.report import write_report

    written = {}
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(payload, indent=2), encoding="utf-8")
        written["json"] = str(json_out)
    if html_out is not None:
        written["html"] = str(write_report(payload, html_out))
    return written


def _date(value: str, option: str):
    """A YYYY-MM-DD option as a date, or a clear error naming the option."""
    import datetime as dt

    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise IpviError(f"{option} must be a date YYYY-MM-DD, got {value!r}") from None


def register(app: typer.Typer) -> None:
    """Add ``audit`` and ``promote`` to the ipvi app."""

    @app.command("audit", help=AUDIT_HELP)
    def audit(
        model_version: str = typer.Option(
            None, "--model-version", help="Audit this registered model version."
        ),
        truth: Path = typer.Option(
            None,
            "--truth",
            help="Synthetic-data truth folder: adds the label-bias and linkage sections "
            "(from evaluation_truth, written by `ipvi train --truth DIR`).",
        ),
        data: Path = typer.Option(None, "--data", help="A scored CSV or Parquet file."),
        label: str = typer.Option(None, "--label", help="Outcome column (0/1)."),
        score: str = typer.Option(None, "--score", help="Score column."),
        threshold: float = typer.Option(
            None, "--threshold", help="Cases with score >= T are selected."
        ),
        prediction: str = typer.Option(None, "--prediction", help="Decision column."),
        positive: str = typer.Option(
            None, "--positive", help="Comma-separated values of --prediction meaning selected."
        ),
        group: list[str] = typer.Option(
            None, "--group", help="Protected-attribute column (repeat for several)."
        ),
        reference: list[str] = typer.Option(
            None,
            "--reference",
            help="Reference group: GROUP (every attribute holding it) or ATTR=GROUP; "
            "default: the largest group.",
        ),
        policy_file: Path = typer.Option(
            None, "--policy", help="Fairness policy YAML (generic form: gates the audit)."
        ),
        person: str = typer.Option(
            None, "--person", help="Person id column: resample persons, not rows."
        ),
        json_out: Path = typer.Option(None, "--json", help="Write the audit JSON here."),
        html_out: Path = typer.Option(None, "--html", help="Write the HTML report here."),
        public: bool = typer.Option(
            False, "--public", help="Suppress every cell with fewer than 11 cases."
        ),
        issued: bool = typer.Option(
            False, "--issued", help="Re-audit issued scores on their matured outcomes."
        ),
        since: str = typer.Option(
            None, "--since", help="With --issued: scores issued from this date, YYYY-MM-DD."
        ),
        as_of: str = typer.Option(
            None,
            "--as-of",
            help="With --issued: outcomes known by this date (default: the extract date).",
        ),
    ) -> None:
        from fairness.report import public_view

        if issued:
            if data is not None or truth is not None:
                raise IpviError("--issued takes neither --data nor --truth")
            payload, written = _audit_issued(
                model_version, since, as_of, json_out, html_out, public=public
            )
        elif (model_version is None) == (data is None):
            raise IpviError("give either --model-version V or --data FILE (or --issued)")
        elif model_version is not None:
            payload = _audit_model_version(model_version, truth, policy_file)
            reports = Path(get_config().paths.reports_dir)
            stem = f"audit-v{model_version}-{payload['audit_id'][:8]}"
            json_out = json_out or reports / f"{stem}.json"
            html_out = html_out or reports / f"{stem}.html"
        else:
            payload = _audit_file(
                data,
                label=label,
                score=score,
                threshold=threshold,
                prediction=prediction,
                positive=positive,
                groups=group or [],
                references=reference or [],
                policy_file=policy_file,
                person=person,
            )
        if not issued:
            if public:
                payload = public_view(payload, payload["policy"]["values"]["public_min_cell"])
            written = _write_outputs(payload, json_out, html_out)
        gate = payload.get("gate")
        if not written:
            print(json.dumps(payload, indent=2))
            return
        for reason in gate["reasons"] if gate else []:
            info(f"  {reason}")
        emit_json(
            {
                "audit_id": payload["audit_id"],
                "status": gate["status"] if gate else None,
                "excluded_rows": payload["excluded_rows"]["total"],
                **written,
            }
        )

    def _audit_issued(
        model_version, since, as_of, json_out, html_out, *, public: bool
    ) -> tuple[dict, dict]:
        from fairness.report import public_view
        from monitoring.reaudit import audit_issued, record_reaudit

        if since is None:
            raise IpviError("--issued needs --since DATE (the first issue date to re-audit)")
        config, engine = get_config(), get_engine()
        result = audit_issued(
            engine,
            config,
            since=_date(since, "--since"),
            as_of=None if as_of is None else _date(as_of, "--as-of"),
            model_version=model_version,
        )
        payload = result.to_dict()
        if public:
            payload = public_view(payload, payload["policy"]["values"]["public_min_cell"])
        version = payload["source"]["model_version"]
        stem = f"reaudit-v{version}-{payload['audit_id'][:8]}"
        reports = Path(config.paths.reports_dir)
        written = _write_outputs(
            payload, json_out or reports / f"{stem}.json", html_out or reports / f"{stem}.html"
        )
        tags = record_reaudit(engine, config, result)
        if tags:
            info(f"model version {version} tagged reaudit_status={tags['reaudit_status']}")
        return payload, written

    def _audit_file(data: Path, *, policy_file: Path | None, **options) -> dict:
        from fairness.audit import run_audit
        from fairness.inputs import scored_file_input

        if options["label"] is None:
            raise IpviError("--data needs --label COL")
        policy, digest, changes = _policy(policy_file)
        positive = options.pop("positive")
        inp = scored_file_input(
            data,
            positive=[v for v in (positive or "").split(",") if v.strip()],
            gated=policy_file is not None,
            **options,
        )
        result = run_audit(
            inp, policy, policy_digest=digest, changes=changes, gated=policy_file is not None
        )
        return result.to_dict()

    def _audit_model_version(model_version: str, truth: Path | None, policy_file) -> dict:
        from fairness.model_version import audit_model_version
        from ipvi.db import session_scope

        if policy_file is not None:
            raise IpviError(
                "--policy is for a generic audit; a model version is audited under the "
                "fairness_policy section of the configuration (--config FILE)"
            )
        if truth is not None and not truth.is_dir():
            raise IpviError(f"truth folder not found: {truth}")
        config = get_config()
        policy, digest, changes = _policy(None)
        from training.registry import frozen_bands

        bands = frozen_bands(config.tracking_uri, config.mlflow.model_name, model_version)
        if bands is None:
            info(
                f"band cut-points read off the predictions (MLflow gives none for {model_version})"
            )
        with session_scope(get_engine()) as session:
            result = audit_model_version(
                session,
                model_version,
                policy=policy,
                digest=digest,
                changes=changes,
                model_name=config.mlflow.model_name,
                bands=bands,
                with_truth=truth is not None,
            )
        return result.to_dict()

    @app.command(
        "promote",
        help="Make model version V the champion, only if its latest fairness audit passed "
        "the gate and still matches the data and the policy. A refusal leaves the champion "
        "where it is, says why and exits non-zero. --force --reason TEXT overrides, recorded.",
    )
    def promote(
        version: str = typer.Argument(..., help="The model version to promote."),
        force: bool = typer.Option(False, "--force", help="Promote without a passing audit."),
        reason: str = typer.Option(None, "--reason", help="Why (required with --force)."),
    ) -> None:
        from fairness.promotion import promote as promote_version
        from ipvi.db import session_scope

        config = get_config()
        with session_scope(get_engine()) as session:
            done = promote_version(
                session,
                version,
                policy=config.fairness_policy,
                digest=config.section_hash("fairness_policy"),
                model_name=config.mlflow.model_name,
                tracking_uri=config.tracking_uri,
                force=force,
                reason=reason,
            )
        if done.outcome == "refused":
            for line in done.reasons:
                info(line)
            raise IpviError(
                f"version {version} not promoted; champion unchanged: {done.reasons[0]}"
            )
        if done.forced:
            info(f"forced promotion of version {version}: {reason}")
            for line in done.reasons:
                info(f"  overridden: {line}")
        emit_json(
            {
                "model_name": done.model_name,
                "version": done.version,
                "previous": done.previous,
                "audit_id": done.audit_id,
                "audit_status": done.audit_status,
                "forced": done.forced,
                "artifacts": done.artifacts,
            }
        )
