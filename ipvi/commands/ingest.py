"""CLI commands ``ipvi ingest`` and ``ipvi purge`` (whose steps are :mod:`workflows.purge`)."""

from __future__ import annotations

from pathlib import Path

import typer

from ipvi.commands.context import (
    config_path,
    emit_json,
    get_config,
    get_engine,
    info,
    site_key,
)


class _Progress:
    """Progress of long work on standard error: a rich bar on a terminal, else plain lines.

    Plain lines (one per written chunk) let a log, or a test, see how far an ingest got.
    """

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.bar = None
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> _Progress:
        if self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                console=self.console,
                transient=True,
            )
            self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def __call__(self, description: str, done: int, total: int) -> None:
        if self.bar is None:
            if done:
                info(f"{description} {done}/{total} rows")
            return
        agency = description.split(":")[0]
        if agency not in self.tasks:
            self.tasks[agency] = self.bar.add_task(description, total=total)
        self.bar.update(self.tasks[agency], description=description, completed=done, total=total)


def register(app: typer.Typer) -> None:
    """Add ``ingest`` and ``purge`` to the ``ipvi`` app."""

    @app.command(
        "ingest",
        help="Map each agency extract to canonical mentions and events in the registry. "
        "Unusable rows are quarantined with a reason; bad DOB, SSN-4, phone or zip values are "
        "nulled and kept as field issues. Re-ingesting the same files changes nothing; changed "
        "records get a new version. Each file is one transaction.",
    )
    def ingest(
        folder: Path = typer.Argument(
            ...,
            help="Folder holding the agency extracts named in the config (ingest.agencies.*.file).",
        ),
        json_output: bool = typer.Option(
            False,
            "--json",
            help="Print one JSON line: rows_in, accepted, accepted_with_issues, quarantined, "
            "by_reason, and the same per agency.",
        ),
    ) -> None:
        """Ingest a folder of agency extracts (see the command's help)."""
        from ingest.load import ingest_directory

        config = get_config()
        engine = get_engine()
        try:
            with _Progress() as progress:
                report = ingest_directory(
                    engine, folder, config.ingest, key=site_key(create=True), progress=progress
                )
        finally:
            engine.dispose()
        for warning in report.warnings:
            info(f"warning: {warning}")
        if json_output:
            emit_json(report.summary())
            return
        info(
            f"ingest run {report.run_id}: {report.rows_in} rows in, {report.accepted} accepted "
            f"({report.accepted_with_issues} with field issues), {report.quarantined} quarantined"
        )
        for reason, count in report.by_reason.items():
            info(f"  quarantined {reason}: {count}")

    @app.command(
        "purge",
        help="Remove records or a person from every stage and every copy (expunction, "
        "correction), keeping only a tombstone without identifiers. The database rows go in one "
        "transaction (mentions, versions, field issues, quarantine, events only they refer to, "
        "links, scores; decisions keep the action but name the tombstone and lose their reason); "
        "then the tier lists are rebuilt without them, MLflow's lists of trained persons and "
        "text reports lose them, the service's link index is rebuilt and a SQLite file is "
        "compacted. A purged record is never ingested again. --verify ID searches every table "
        "and file for what is left of ID (exit 1 when anything is).",
    )
    def purge(
        record_id: list[str] = typer.Option(
            None, "--record-id", help="Source record id to purge (repeat for several)."
        ),
        person_id: str = typer.Option(
            None,
            "--person-id",
            help="Linked person id: purge every record of that person, and the person's "
            "crosswalk, review and id-change rows.",
        ),
        reason: str = typer.Option(
            None,
            "--reason",
            help="Why (court order, expunction, correction); kept in the tombstone.",
        ),
        verify_id: str = typer.Option(
            None,
            "--verify",
            metavar="ID",
            help="Purge nothing: print every table and file where the person or record id ID "
            "(or one of its record ids, or an unkeyed hash of them) still appears; exit 1 if "
            "any.",
        ),
        json_output: bool = typer.Option(False, "--json", help="Print one JSON line of counts."),
        link_index: bool = typer.Option(
            True,
            "--link-index/--no-link-index",
            help="rebuild the service's link index without the purged records (in "
            "serving.audit_spool_dir), removing the old one",
        ),
    ) -> None:
        """Purge records from every stage (see the command's help)."""
        from ipvi.errors import IpviError
        from ipvi.purge import PurgeTarget
        from workflows.purge import PurgeContext
        from workflows.purge import purge as purge_everywhere

        if verify_id:
            if record_id or person_id:
                raise IpviError("purge --verify ID searches only: give no --record-id/--person-id")
            _verify(verify_id, json_output)
            return
        if not record_id and not person_id:
            raise IpviError("purge needs --record-id ID (repeatable) or --person-id ID")
        if not reason:
            raise IpviError("purge needs --reason TEXT (court order, expunction, correction)")
        engine = get_engine()
        try:
            context = PurgeContext(
                engine=engine,
                config=get_config(),
                key=site_key(create=True),
                config_path=config_path(),
                link_index=link_index,
            )
            report = purge_everywhere(
                context,
                PurgeTarget(record_ids=tuple(record_id or ()), person_id=person_id),
                reason=reason,
            )
        finally:
            engine.dispose()
        result, after = report.result, dict(report.after)
        warning = after.pop("warning", None)
        if warning:
            info(f"warning: {warning}")
        payload = {
            "tombstone_id": result.tombstone_id,
            "records": result.record_count,
            "removed": result.removed,
            "counts": result.counts,
            **after,
        }
        if json_output:
            emit_json(payload)
            return
        if not result.removed:
            info("warning: the registry held no rows for the given record id(s)")
        counts = ", ".join(f"{table} {rows}" for table, rows in result.counts.items() if rows)
        info(
            f"purged {result.record_count} record(s): {counts or 'nothing stored'}; "
            f"tombstone {result.tombstone_id}"
        )
        info(
            f"tier lists rewritten: {after['tier_lists_rewritten']}; reports redacted: "
            f"{len(after['reports_redacted'])}; model versions to retrain: "
            f"{', '.join(after['model_versions_to_retrain']) or 'none'}"
        )


def _verify(identifier: str, json_output: bool) -> None:
    """``ipvi purge --verify ID``: print where ``identifier`` still appears; exit 1 if anywhere."""
    from workflows.purge import verify

    engine = get_engine()
    try:
        search = verify(engine, get_config(), site_key(), identifier)
    finally:
        engine.dispose()
    findings = [
        {"store": f.store, "what": f.what, "count": f.count} for f in search.findings.values()
    ]
    if json_output:
        emit_json({"found": findings, "kept_pseudonyms": search.kept})
    else:
        for finding in findings:
            print(f"{finding['store']}: {finding['what']} ({finding['count']})")
        for store, rows in search.kept.items():
            info(f"kept by design: {store} holds its keyed pseudonym in {rows} value(s)")
        info(
            f"{identifier}: found in {len(findings)} place(s)"
            if findings
            else f"{identifier}: found nowhere"
        )
    if findings:
        raise typer.Exit(1)
