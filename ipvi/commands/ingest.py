"""CLI commands ``ipvi ingest`` and ``ipvi purge`` (whose steps are :mod:`workflows.purge`)."""

from __future__ import annotations

from pathlib import Path

import typer

from ipvi.commands.context import emit_json, get_config, get_engine, info, prebuild_link_index


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
                report = ingest_directory(engine, folder, config.ingest, progress=progress)
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
        help="Remove records from the registry (expunction, correction), keeping only a "
        "tombstone without identifiers. Their mentions, versions, field issues, quarantined rows "
        "and the events only they refer to are deleted in one transaction, and a purged record "
        "is never ingested again.",
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
            ...,
            "--reason",
            help="Why (court order, expunction, correction); kept in the tombstone.",
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
        from workflows.purge import purge_registry

        if not record_id and not person_id:
            raise IpviError("purge needs --record-id ID (repeatable) or --person-id ID")
        engine = get_engine()
        try:
            result = purge_registry(
                engine,
                PurgeTarget(record_ids=tuple(record_id or ()), person_id=person_id),
                reason=reason,
                lock_timeout=get_config().ingest.lock_timeout_seconds,
            )
        finally:
            engine.dispose()
        payload = {
            "tombstone_id": result.tombstone_id,
            "records": result.record_count,
            "removed": result.removed,
            "counts": result.counts,
            **(prebuild_link_index() if link_index else {}),
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
