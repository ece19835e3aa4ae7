"""A generated deployment end to end (``ipvi generate --deployment``, ``ipvi simulate``).

:func:`deploy` builds a self-contained deployment in a work folder (its own registry, MLflow
store, reports, key and configuration): generate the extracts with their truth (and any drift),
ingest and link them, train on the years before the deployment date, audit the version and
promote it through the fairness gate, issue the champion's scores at the decision dates of the
monitored years (:func:`synth.deployment.issue_scores`, ``source`` = api), and record the staff
decisions through the service's decision code (:func:`serving.decisions.record_decision`).
:func:`simulate` then runs the monitor (the code of ``ipvi monitor``) on the extract date and
fills ``notification_effect`` with the truth. It spans every stage, so it lives here.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from ipvi.config import Config, load_config, read_yaml_mapping
from ipvi.db import open_registry, session_scope
from ipvi.errors import IpviError
from ipvi.site_key import load_site_key

Say = Callable[[str], None]
CONFIG_FILE = "config.yaml"
REGISTRY_FILE = "registry.sqlite"
DATA_FOLDER = "data"
NOT_WRITABLE = "--workdir {folder} is not a writable folder ({why})"
ALREADY_USED = (
    "--workdir {folder} already holds a deployment ({registry}): give an empty or new folder"
)
FORCED_REASON = "simulated deployment: the champion serves whatever its gate said"


@dataclass
class DeploymentResult:
    """What :func:`deploy` built: the configuration and the figures (the champion's
    ``model_version`` among them)."""

    config: Config
    folder: Path
    figures: dict
    matched: object  # pandas DataFrame: issued scores with their generator offence


def _check_workdir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".ipvi-write-probe"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise IpviError(NOT_WRITABLE.format(folder=folder, why=error.strerror or error)) from None
    if (folder / REGISTRY_FILE).exists():
        raise IpviError(ALREADY_USED.format(folder=folder, registry=REGISTRY_FILE))


def _write_config(folder: Path, base_config: str | Path | None, training_until) -> Path:
    """The deployment's configuration: the caller's file (if any) with every store inside
    ``folder`` and training's extract date at the deployment's start."""
    data = read_yaml_mapping(base_config, what="config") if base_config else {}
    sections = {
        "database": {"url": f"sqlite:///{folder / REGISTRY_FILE}"},
        "mlflow": {
            "tracking_uri": f"sqlite:///{folder / 'mlflow.db'}",
            "artifact_location": str(folder / "mlartifacts"),
        },
        "paths": {
            "home": str(folder / "home"),
            "reports_dir": str(folder / "reports"),
            "audit_key_file": str(folder / "audit.key"),
            "audit_checkpoint_file": str(folder / "audit-checkpoints.jsonl"),
        },
        "training": {"extract_date": training_until.isoformat(), "list_dir": str(folder / "lists")},
        "serving": {"audit_spool_dir": str(folder / "spool")},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    path = folder / CONFIG_FILE
    path.write_text(yaml.safe_dump(data, sort_keys=True), encoding="utf-8")
    return path


@contextlib.contextmanager
def _stores_of(config: Config) -> Iterator[None]:
    """The registry and MLflow URLs of ``config`` win over the caller's environment while the
    deployment runs (they would otherwise point it at the caller's stores)."""
    wanted = {
        "IPVI_DATABASE_URL": config.database.url,
        "MLFLOW_TRACKING_URI": config.mlflow.tracking_uri,
    }
    saved = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _promote(engine, config: Config, version: str) -> dict:
    """Audit ``version`` and promote it through the gate (forced, with the reason recorded,
    when the gate refuses: the deployment must serve a champion to be monitored)."""
    from fairness.model_version import audit_model_version
    from fairness.policy import policy_changes
    from fairness.promotion import promote
    from training.registry import version_info

    policy, digest = config.fairness_policy, config.section_hash("fairness_policy")
    bands = version_info(config.tracking_uri, config.mlflow.model_name, version)["bands"]
    with session_scope(engine) as session:
        audit = audit_model_version(
            session,
            version,
            policy=policy,
            digest=digest,
            changes=policy_changes(policy),
            model_name=config.mlflow.model_name,
            bands=bands,
        )
    common = {
        "policy": policy,
        "digest": digest,
        "model_name": config.mlflow.model_name,
        "tracking_uri": config.tracking_uri,
    }
    with session_scope(engine) as session:
        done = promote(session, version, **common)
    refused = list(done.reasons) if done.outcome == "refused" else []
    if refused:
        with session_scope(engine) as session:
            done = promote(session, version, force=True, reason=FORCED_REASON, **common)
    return {
        "gate": audit.to_dict()["gate"]["status"],
        "forced": bool(done.forced),
        "refused_because": refused,
    }


def _record_decisions(engine, config: Config, decisions: list[dict]) -> int:
    from serving.decisions import record_decision
    from serving.schemas import DecisionRequest

    settings = config.serving
    with session_scope(engine) as session:
        for decision in decisions:
            record_decision(
                session,
                DecisionRequest(**decision),
                key_name="simulated-staff",
                actions=settings.decision_actions,
                clock_skew_seconds=settings.decision_clock_skew_seconds,
            )
    return len(decisions)


def deploy(
    workdir: str | Path,
    *,
    persons: int,
    seed: int,
    drift: str | None = None,
    override_rate: float = 0.1,
    base_config: str | Path | None = None,
    say: Say | None = None,
    **synth,
) -> DeploymentResult:
    """Build a generated deployment in ``workdir`` (see the module docstring); ``synth``:
    further generator settings (:func:`synth.deployment.deployment_params`).

    Raises
    ------
    IpviError
        Bad input (an unknown drift, too few persons, a folder that cannot be written or
        already holds a deployment), or a stage's own error.
    """
    from ingest.load import ingest_directory
    from linkage.run import link_registry
    from synth import TRUTH_DIR, generate
    from synth.deployment import (
        deployment_params,
        issue_scores,
        match_truth,
        read_truth_offences,
        staff_decisions,
    )
    from training.run import train_from_registry
    from training.scoring import RiskScorer

    say = say or (lambda message: None)
    deployment = deployment_params(
        persons=persons, seed=seed, drift=drift, override_rate=override_rate, **synth
    )
    folder = Path(workdir).resolve()
    _check_workdir(folder)
    config = load_config(_write_config(folder, base_config, deployment.start))
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage] = round(now - clock, 2)
        clock = now
        say(f"{stage}: {seconds[stage]:.1f} s")

    data = folder / DATA_FOLDER
    generated = generate(deployment.params, data, config=config)
    lap("generate")
    with _stores_of(config):
        engine = open_registry(config.database_url)
        try:
            key = load_site_key(config.paths.audit_key_file, create=True)
            ingested = ingest_directory(engine, data, config.ingest, key=key)
            lap("ingest")
            linked = link_registry(engine, config.linkage, report=lambda message: None)
            lap("link")
            trained = train_from_registry(engine, config, key=key)
            version = str(trained["model_version"])
            lap("train")
            promotion = _promote(engine, config, version)
            lap("audit and promote")
            scorer = RiskScorer.from_registry(
                config.tracking_uri, config.mlflow.model_name, "champion"
            )
            issued = issue_scores(engine, scorer, deployment)
            lap("issue scores")
            matched = match_truth(issued, read_truth_offences(data / TRUTH_DIR))
            decisions = staff_decisions(matched, override_rate=deployment.override_rate, seed=seed)
            _record_decisions(engine, config, decisions)
            lap("record decisions")
        finally:
            engine.dispose()
    figures = {
        "persons": persons,
        "seed": seed,
        "drift": drift,
        "deployment_start": deployment.start.isoformat(),
        "extract_date": deployment.end.isoformat(),
        "override_rate": deployment.override_rate,
        "mentions": generated["mentions"],
        "rows_in": ingested.rows_in,
        "quarantined": ingested.quarantined,
        "linked_persons": linked.get("persons"),
        "model_version": version,
        "auc": trained.get("auc"),
        "promotion": promotion,
        "issued": int(len(issued)),
        "issued_matched_to_truth": int(matched["p_recorded"].notna().sum()),
        "notified": int(matched["notified"].sum()),
        "decisions": len(decisions),
        "overridden": sum(d["tier_decision"] == "overridden" for d in decisions),
        "seconds": seconds,
    }
    (folder / "deployment.json").write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    return DeploymentResult(config, folder, figures, matched)


def simulate(workdir: str | Path, **settings) -> dict:
    """:func:`deploy` (``settings``: its keyword arguments), then the monitor on the extract
    date with the truth filled in.

    Returns
    -------
    dict
        The monitor's JSON (``ipvi monitor``), with ``notification_effect.truth`` (and its
        parts) from the generator and ``simulation`` (the deployment's figures). Also written
        to ``workdir/monitor.json`` and the report to ``workdir/monitor.html``.
    """
    from monitoring.report import write_report
    from monitoring.run import monitor
    from synth.deployment import notification_truth

    started = time.perf_counter()
    result = deploy(workdir, **settings)
    config = result.config
    clock = time.perf_counter()
    with _stores_of(config):
        engine = open_registry(config.database_url)
        try:
            payload = monitor(
                engine,
                config,
                as_of=result.figures["extract_date"],
                model_version=result.figures["model_version"],
            )
        finally:
            engine.dispose()
    payload["notification_effect"].update(notification_truth(result.matched))
    result.figures["seconds"]["monitor"] = round(time.perf_counter() - clock, 2)
    result.figures["wall_seconds"] = round(time.perf_counter() - started, 2)
    payload["simulation"] = result.figures
    write_report(payload, result.folder / "monitor.html")
    (result.folder / "monitor.json").write_text(
        json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n"
    )
    return payload
