"""CLI command of the monitoring stage: ``ipvi monitor``.

Parses options, calls :func:`monitoring.run.run_monitor` and reports; the exit code is 1 on
``alarm`` so a scheduled run fails loudly.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ipvi.commands.context import emit_json, get_config, get_engine, info


def monitor(
    as_of: str = typer.Option(
        ..., "--as-of", help="Extract date, YYYY-MM-DD: outcomes are known up to it."
    ),
    html: Path = typer.Option(None, "--html", help="Write the HTML report here."),
    json_path: Path = typer.Option(None, "--json", help="Write the monitor's JSON here."),
    model_version: str = typer.Option(
        None,
        "--model-version",
        help="The model version to watch (default: the latest that issued scores).",
    ),
) -> int:
    """Watch the live model: issued scores against matured outcomes, drift from training, a
    re-audit on real outcomes, overrides and linkage health. Exit code 1 on alarm."""
    from monitoring.run import run_monitor

    payload = run_monitor(
        get_engine(),
        get_config(),
        as_of=as_of,
        model_version=model_version,
        html=html,
        json_path=json_path,
    )
    counts = payload["counts"]
    info(
        f"model version {payload['model_version']}: {counts['issued']} offence(s) scored, "
        f"{counts['matured']} with a matured outcome; status {payload['status']}"
    )
    for reason in payload["reasons"][:10]:
        info(f"  {reason}")
    if html:
        info(f"report: {html}")
    if json_path is None:
        emit_json({key: payload[key] for key in ("status", "reasons", "model_version", "counts")})
    return 1 if payload["status"] == "alarm" else 0


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the ipvi app."""
    app.command("monitor")(monitor)
