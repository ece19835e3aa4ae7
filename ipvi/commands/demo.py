"""``ipvi demo``: the whole pipeline on the shipped sample, one stage command after another.

The demo only wires the stage commands together, each run as its own ``ipvi`` process with its
``--json`` figures, so what it shows is exactly what an analyst would get by typing the same
commands. It never starts a server: it ends by printing the command that does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import typer

from ipvi.commands.context import get_config, get_engine, info
from ipvi.db import session_scope
from ipvi.errors import IpviError


def _run_stage(title: str, args: list[str], json_lines: bool = True) -> dict:
    """Run one ``ipvi`` sub-command; return its last JSON line (if any); fail loudly."""
    info(f"\n== {title}: ipvi {' '.join(args)}")
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "ipvi.cli", *args], stdout=subprocess.PIPE, text=True
    )
    seconds = time.perf_counter() - started
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    if completed.returncode != 0:
        raise IpviError(f"demo stopped: 'ipvi {args[0]}' exited {completed.returncode}")
    figures = json.loads(lines[-1]) if json_lines and lines and lines[-1].startswith("{") else {}
    info(f"   done in {seconds:.1f} s")
    return figures


def register(app: typer.Typer) -> None:
    """Add ``ipvi demo`` to the app."""

    @app.command()
    def demo(
        sample: Path = typer.Option(
            None, help="Folder of agency extracts (default: the shipped data_samples/)."
        ),
        truth: bool = typer.Option(
            True,
            help="Also evaluate against the sample's truth folder (evaluation only; "
            "the pipeline's own results do not depend on it).",
        ),
    ) -> None:
        """Run ingest -> link -> train -> audit -> promote -> tier list on the sample."""
        config = get_config()
        sample = sample or Path(config.paths.sample_dir)
        if not sample.is_dir():
            raise IpviError(f"sample folder not found: {sample} (run from the project root)")
        truth_args = ["--truth", str(sample / "truth")] if truth else []
        reports = Path(config.paths.reports_dir)
        reports.mkdir(parents=True, exist_ok=True)

        ingested = _run_stage("1/6 ingest", ["ingest", str(sample), "--json"])
        linked = _run_stage("2/6 link", ["link", *truth_args, "--json"])
        trained = _run_stage("3/6 train", ["train", *truth_args, "--json"])
        version = str(trained["model_version"])
        audit_json = reports / f"audit_v{version}.json"
        audit_html = reports / f"audit_v{version}.html"
        _run_stage(
            "4/6 fairness audit",
            ["audit", "--model-version", version, *truth_args, "--json", str(audit_json)]
            + ["--html", str(audit_html)],
            json_lines=False,
        )
        _run_stage("5/6 promote (fairness gate)", ["promote", version], json_lines=False)
        from monitoring.reaudit import extract_date

        with session_scope(get_engine()) as session:
            as_of = extract_date(session, config).date().isoformat()
        scored = _run_stage("6/6 tier list", ["score", "--all", "--as-of", as_of, "--json"])

        audit = json.loads(audit_json.read_text()) if audit_json.is_file() else {}
        summary = {
            "rows_in": ingested.get("rows_in"),
            "accepted": ingested.get("accepted"),
            "quarantined": ingested.get("quarantined"),
            "persons": linked.get("persons"),
            "model_version": version,
            "auc": trained.get("auc"),
            "auc_ceiling": trained.get("auc_ceiling"),
            "gate": (audit.get("gate") or {}).get("status"),
            "scored_persons": scored.get("n_scored"),
            "tier_counts": scored.get("tier_counts"),
        }
        info("\n== summary")
        for key, value in summary.items():
            info(f"   {key:<15} {value}")
        info(f"   registry        {config.database_url}")
        info(f"   mlflow          {config.tracking_uri}")
        info(f"   fairness report {audit_html}")
        for key in ("csv", "html"):
            if scored.get(key):
                info(f"   tier list       {scored[key]}")

        from serving.launch import curl_example

        base_url = f"http://{config.serving.host}:{config.serving.port}"
        info(
            "\nStart the decision-support service (it needs an API key):\n"
            "   IPVI_KEY=$(.venv/bin/ipvi keys add demo-$RANDOM --role scoring)\n"
            f"   .venv/bin/ipvi serve          # {base_url}, OpenAPI document at /docs\n"
            "Then, in another shell with IPVI_KEY set, score the example person:\n"
            f"   {curl_example(base_url=base_url)}"
        )
