"""CLI commands of the training stage: ``ipvi train`` and ``ipvi score``.

Each parses options, loads the configuration, calls one library function of
:mod:`training.run` and reports; the training library (lightgbm, mlflow) is imported inside
the commands.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ipvi.commands.context import (
    checked_engine,
    emit_json,
    get_config,
    get_engine,
    info,
    site_key,
)


def train(
    truth: Path = typer.Option(
        None,
        "--truth",
        help="Generator truth folder (evaluation only): adds ceiling metrics, the "
        "truth-crosswalk and no-linkage variants, and the evaluation_truth table.",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON line of figures."),
) -> None:
    """Train the risk model on the registry's linked persons, evaluate it, register it in MLflow
    (alias 'challenger') and write evaluation_predictions."""
    from training.run import train_from_registry

    figures = train_from_registry(
        get_engine(), get_config(), key=site_key(create=True), truth_dir=truth
    )
    if json_output:
        emit_json(figures)
        return
    info(
        f"run {figures['run_id']}: model {figures['model_name']} version "
        f"{figures['model_version']} (alias challenger)"
    )
    info(
        f"test AUC {figures['auc']:.3f} (95% CI {figures['auc_ci'][0]:.3f}-"
        f"{figures['auc_ci'][1]:.3f}); tiers {figures['auc_tiers']:.3f}, ODARA-style "
        f"{figures['auc_odara']:.3f}, scorecard {figures['auc_scorecard']:.3f}; "
        f"ECE {figures['ece']:.3f}; n_train {figures['n_train']}, n_test {figures['n_test']}"
    )
    info(f"tier shares: {figures['tier_shares']}")
    if figures.get("auc_ceiling") is not None:
        info(
            f"ceiling AUC {figures['auc_ceiling']:.3f}, ECE {figures['ece_ceiling']:.3f}; "
            f"mean |p - p_recorded| {figures['mae_vs_truth']:.3f}"
        )


def score(
    all_persons: bool = typer.Option(
        False, "--all", help="Score every person with an IPV offence known at --as-of."
    ),
    as_of: str = typer.Option(..., "--as-of", help="Decision date, YYYY-MM-DD."),
    model: str = typer.Option(
        "champion", "--model", help="Registered alias (champion, challenger) or version number."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON line of figures."),
    engine: str = typer.Option(
        None,
        "--engine",
        help="where features and scores are computed: local or spark (default linkage.engine)",
    ),
) -> None:
    """Score persons as of a date, store the scores and write the coordinators' tier list
    (CSV and HTML, with the changes since the last list)."""
    from ipvi.errors import IpviError
    from training.run import score_all

    if not all_persons:
        raise IpviError("ipvi score needs --all (single persons are scored by the service)")
    figures = score_all(
        get_engine(),
        get_config(),
        as_of=as_of,
        alias_or_version=model,
        engine_name=checked_engine(engine),
        report=info,
    )
    if json_output:
        emit_json(figures)
        return
    info(
        f"scored {figures['n_scored']} person(s) with model version {figures['model_version']}; "
        f"tiers {figures['tier_counts']}; changes {figures['changes']}"
    )
    info(f"tier list: {figures['csv']} and {figures['html']}")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the ipvi app."""
    app.command("train")(train)
    app.command("score")(score)
