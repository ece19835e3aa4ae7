"""CLI commands of the linkage stage: link, dedupe, review export/import, link-eval, link-report.

Each command parses options, loads the configuration, calls one library function and reports;
the linkage library is imported inside the commands so ``ipvi dedupe`` loads no mlflow,
bentoml or lightgbm.
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
    prebuild_link_index,
)

review_app = typer.Typer(help="Clerical review of uncertain record pairs.", no_args_is_help=True)


ENGINE_HELP = (
    "where pairs are made, compared and clustered: local or spark (default linkage.engine)"
)


def _engine_option():
    return typer.Option(None, "--engine", help=ENGINE_HELP)


def _settings():
    from linkage.settings import LinkageSettings

    return LinkageSettings.from_config(get_config().linkage)


def dedupe(
    inputs: list[Path] = typer.Argument(..., help="one CSV/Parquet file, or two to link"),
    id_column: str = typer.Option(..., "--id", help="the column identifying a row"),
    mapping: str = typer.Option(
        ..., "--map", help="canonical field=column pairs, e.g. first_name=FN,dob=BIRTH"
    ),
    out: Path = typer.Option(..., "--out", help="output CSV: id, cluster_id, confidence"),
    report: Path = typer.Option(
        None, "--report", help="also write the linkage report (HTML, charts inline) here"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the summary as one JSON line"),
    engine: str = _engine_option(),
) -> None:
    """Deduplicate one file, or link two, learning every parameter from the files."""
    from ipvi.export import write_csv
    from linkage.dedupe import dedupe as run_dedupe
    from linkage.report import write_report

    result = run_dedupe(
        list(inputs),
        id_column,
        mapping,
        _settings(),
        engine=checked_engine(engine),
        spark=get_config().spark,
        report=info,
    )
    for warning in result.warnings:
        info(f"warning: {warning}")
    write_csv(result.output, out)
    result.summary["out"] = str(out)
    if report is not None:
        write_report(result.report, html_path=report, json_path=None)
        result.summary["report"] = str(report)
    if as_json:
        emit_json(result.summary)
    else:
        info(
            f"{result.summary['records']} rows -> {result.summary['clusters']} clusters "
            f"({result.summary['candidate_pairs']} candidate pairs); wrote {out}"
        )


def link(
    truth: Path = typer.Option(None, "--truth", help="truth folder: evaluate the run against it"),
    as_json: bool = typer.Option(False, "--json", help="print the run summary as one JSON line"),
    link_index: bool = typer.Option(
        True,
        "--link-index/--no-link-index",
        help="build the service's link index of the new run (in serving.audit_spool_dir)",
    ),
    break_stale_lock: bool = typer.Option(
        False,
        "--break-stale-lock",
        help="take over a linkage lock whose lease ran out (a run killed on another host); a "
        "lock whose process on this host is gone is taken over anyway, a live one never",
    ),
    engine: str = _engine_option(),
) -> None:
    """Link the registry's mentions into persons: crosswalk, review queue, run log."""
    from linkage.run import link_registry

    summary = link_registry(
        get_engine(),
        get_config().linkage,
        truth_dir=truth,
        break_stale_lock=break_stale_lock,
        engine_name=checked_engine(engine),
        spark=get_config().spark,
        report=info,
    )
    if "lock_taken_over" in summary:
        info(f"warning: {summary['lock_taken_over']}")
    if link_index:
        summary.update(prebuild_link_index())
    if as_json:
        emit_json(summary)
    else:
        info(
            f"linkage run {summary['run_id']}: {summary['mentions']} mentions -> "
            f"{summary['persons']} persons, {summary['review_pairs']} pairs queued for review"
        )
        if "metrics" in summary:
            metrics = summary["metrics"]
            info(f"pairwise F1 {metrics['pairwise_f1']:.4f}, B-cubed F1 {metrics['bcubed_f1']:.4f}")


def link_eval(
    truth: Path = typer.Option(None, "--truth", help="truth folder (record_id -> person_id)"),
    labels: bool = typer.Option(
        False,
        "--labels",
        help="estimate precision and recall from clerks' decisions on the accuracy sample",
    ),
    as_json: bool = typer.Option(False, "--json", help="print the metrics as one JSON line"),
) -> None:
    """Evaluate the current crosswalk: against a truth folder, or from clerks' labels."""
    from ipvi.errors import IpviError

    if (truth is None) == (not labels):
        raise IpviError("give either --truth DIR or --labels (exactly one)")
    if labels:
        from linkage.report import accuracy_from_labels

        metrics = accuracy_from_labels(get_engine(), get_config().linkage)
        if as_json:
            emit_json(metrics)
        elif metrics["enough"]:
            for name in ("precision", "recall"):
                low, high = metrics[f"{name}_interval"]
                info(f"{name}: {metrics[name]:.4f} (95% interval {low:.4f} to {high:.4f})")
            info(f"from {metrics['labels']} decided pairs of the accuracy sample")
        else:
            info(
                f"not enough decisions yet: {metrics['labels']} of {metrics['sample_pairs']} "
                f"sample pairs decided; {'; '.join(metrics['missing'][:3])}"
            )
        return
    from linkage.run import evaluate_crosswalk

    metrics = evaluate_crosswalk(get_engine(), truth)
    if as_json:
        emit_json(metrics)
    else:
        for key, value in metrics.items():
            if not isinstance(value, dict):
                info(f"{key}: {value}")


def link_report(
    html: Path = typer.Option(None, "--html", help="write the report as HTML (charts inline)"),
    json_out: Path = typer.Option(None, "--json", help="write the report as JSON"),
) -> None:
    """Report the registry's last linkage run: model, blocking, clusters, changes, backlog."""
    from ipvi.errors import IpviError
    from linkage.report import registry_report, write_report

    if html is None and json_out is None:
        raise IpviError("give --html FILE and/or --json FILE")
    report = registry_report(get_engine(), get_config().linkage)
    write_report(report, html_path=html, json_path=json_out)
    accuracy = report["accuracy_from_labels"]
    info(
        f"linkage run {report['run']['run_id']}: report written to "
        f"{', '.join(str(p) for p in (html, json_out) if p)}"
        + ("" if accuracy else " (no accuracy estimate yet: not enough decided sample pairs)")
    )


@review_app.command("export")
def review_export(
    out: Path = typer.Option(..., "--out", help="CSV file to write"),
    limit: int = typer.Option(None, "--limit", min=1, help="at most this many pairs"),
    queue: str = typer.Option(
        "priority",
        "--queue",
        help="priority (uncertain pairs) or sample (the random sample for accuracy)",
    ),
) -> None:
    """Write pending review pairs: by priority, then the most uncertain first."""
    from ipvi.db import session_scope
    from ipvi.errors import IpviError
    from linkage.review import export_pending

    if queue not in ("priority", "sample"):
        raise IpviError(f"--queue {queue!r}: choose priority or sample")
    with session_scope(get_engine()) as session:
        count = export_pending(session, out, limit=limit, queue=queue)
    info(f"wrote {count} pending pair(s) to {out}")


@review_app.command("import")
def review_import(
    file: Path = typer.Argument(
        ..., help="CSV of decisions: pair_id, decision, reviewer, decided_at"
    ),
) -> None:
    """Load clerical decisions (match / non-match / unsure); they bind the next linkage run."""
    from ipvi.db import session_scope
    from linkage.review import import_decisions

    with session_scope(get_engine()) as session:
        count = import_decisions(session, file)
    info(f"recorded {count} decision(s) from {file}")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the ipvi app."""
    app.command("dedupe")(dedupe)
    app.command("link")(link)
    app.command("link-eval")(link_eval)
    app.command("link-report")(link_report)
    app.add_typer(review_app, name="review")
