"""Load mapped extracts into the registry: one transaction per file, versions, idempotency.

A file is stored in one transaction, so a process killed mid-file leaves the registry as it was
before that file. A record already stored with the same content is left alone; with changed
content its old version moves to ``mention_versions`` (``event_versions`` for events) and the new
one becomes current. A quarantined row already stored is not stored again. Each ``ingest`` adds
one row to ``ingest_runs``, updated in each file's transaction, so the run log always agrees with
the data. Bulk writes go through the driver (``executemany`` on SQLite, ``COPY`` on PostgreSQL)
in chunks, which keeps 1M-row extracts fast and memory flat.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import (
    Connection,
    Engine,
    Table,
    bindparam,
    delete,
    insert,
    literal,
    select,
    update,
)

from ingest.extract import check_columns, header, read_extract
from ingest.lock import registry_lock
from ingest.mapping import MappedExtract, check_mapping, map_extract, required_columns
from ipvi.bulk import bulk_insert
from ipvi.config import IngestConfig
from ipvi.errors import ConfigError, IpviError
from ipvi.purge import PurgedRecords
from ipvi.schema import TEXT
from ipvi.site_key import SiteKey
from ipvi.tables.ingest import (
    event_versions,
    events,
    field_issues,
    ingest_runs,
    mention_versions,
    mentions,
    purged_records,
    quarantine,
)

log = logging.getLogger(__name__)

SQLITE_CACHE_KB = 512 * 1024
# (description, rows done, rows in total): how long work reports its progress.
ProgressFn = Callable[[str, int, int], None]


def _no_progress(description: str, done: int, total: int) -> None:
    """The default progress sink: nothing to show."""


@dataclass
class FileReport:
    """What ingesting one agency file did."""

    agency: str
    file: str
    status: str  # loaded | missing
    rows_in: int = 0
    accepted: int = 0
    accepted_with_issues: int = 0
    quarantined: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    mentions_new: int = 0
    mentions_changed: int = 0
    mentions_unchanged: int = 0
    events_new: int = 0
    events_changed: int = 0
    events_unchanged: int = 0
    quarantine_stored: int = 0
    field_issues_stored: int = 0


@dataclass
class IngestReport:
    """What one ``ipvi ingest`` did, per agency and in total."""

    run_id: int
    files: dict[str, FileReport] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def _total(self, name: str) -> int:
        return sum(getattr(report, name) for report in self.files.values())

    @property
    def rows_in(self) -> int:
        return self._total("rows_in")

    @property
    def accepted(self) -> int:
        return self._total("accepted")

    @property
    def accepted_with_issues(self) -> int:
        return self._total("accepted_with_issues")

    @property
    def quarantined(self) -> int:
        return self._total("quarantined")

    @property
    def by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for report in self.files.values():
            for reason, count in report.by_reason.items():
                counts[reason] = counts.get(reason, 0) + count
        return dict(sorted(counts.items()))

    def summary(self) -> dict:
        """The one-line JSON of ``ipvi ingest --json``."""
        return {
            "run_id": self.run_id,
            "rows_in": self.rows_in,
            "accepted": self.accepted,
            "accepted_with_issues": self.accepted_with_issues,
            "quarantined": self.quarantined,
            "by_reason": self.by_reason,
            "agencies": {name: asdict(report) for name, report in self.files.items()},
            "warnings": self.warnings,
        }


def plan_files(folder: Path, config: IngestConfig) -> tuple[list[tuple[str, Path]], list[str]]:
    """The extracts to load, checked up front (readable, mapped columns present).

    A missing file is a warning (the other agencies still load); a file that cannot be read or
    lacks a mapped column is an error before anything is written.
    """
    if not folder.is_dir():
        raise IpviError(f"{folder}: not a folder of agency extracts")
    prefixes = [mapping.record_prefix for mapping in config.agencies.values()]
    shared = sorted({prefix for prefix in prefixes if prefixes.count(prefix) > 1})
    if shared:  # ids of two agencies would collide in the registry
        raise ConfigError(f"config key 'ingest.agencies': record_prefix {shared} used twice")
    plan, warnings = [], []
    for agency, mapping in config.agencies.items():
        check_mapping(agency, mapping)
        path = folder / mapping.file
        if not path.exists():
            warnings.append(f"{agency}: {mapping.file} not found in {folder}; skipped")
            continue
        check_columns(path, header(path), required_columns(mapping))
        plan.append((agency, path))
    if not plan:
        expected = ", ".join(mapping.file for mapping in config.agencies.values())
        raise IpviError(f"{folder}: no agency extract found (expected {expected})")
    return plan, warnings


def ingest_directory(
    engine: Engine,
    folder: str | Path,
    config: IngestConfig,
    *,
    key: SiteKey | None = None,
    progress: ProgressFn = _no_progress,
) -> IngestReport:
    """Ingest every agency extract of ``folder`` into the registry at ``engine``.

    Takes an engine rather than a session because each file is its own transaction.

    Parameters
    ----------
    engine : Engine
        The registry, already at the alembic head (:func:`ipvi.db.open_registry`).
    folder : path
        Holds the extracts named by ``config.agencies[*].file``.
    config : IngestConfig
        Mappings, DOB plausibility bounds and the lock timeout.
    key : SiteKey, optional
        The site secret: needed once the registry holds purged records, whose pseudonyms
        (:class:`ipvi.purge.PurgedRecords`) keep them from being stored again.
    progress : callable, optional
        Called as ``progress(description, done, total)`` while files are read and written.

    Returns
    -------
    IngestReport
        Counts per agency and in total; ``rows_in == accepted + quarantined`` for each file.
    """
    folder = Path(folder)
    plan, warnings = plan_files(folder, config)
    for warning in warnings:  # returned in the report too, for the caller to show
        log.info(warning)
    with registry_lock(engine, timeout=config.lock_timeout_seconds):
        run_id = _start_run(engine, folder)
        report = IngestReport(run_id=run_id, warnings=warnings)
        for agency, mapping in config.agencies.items():
            if (agency, folder / mapping.file) not in plan:
                report.files[agency] = FileReport(agency, mapping.file, "missing")
        try:
            _load_files(engine, report, plan, config, progress, key)
        except BaseException as error:
            problem = str(error) if isinstance(error, IpviError) else type(error).__name__
            _finish_run(engine, run_id, "failed", problem)
            raise
        _finish_run(engine, run_id, "completed", None)
    return report


def _load_files(
    engine: Engine,
    report: IngestReport,
    plan: list[tuple[str, Path]],
    config: IngestConfig,
    progress: ProgressFn,
    key: SiteKey | None,
) -> None:
    """Read and map the next file in a worker thread while the current one is written.

    Parsing is mostly vectorised Arrow/pandas work and the SQLite driver releases the GIL while
    it steps, so the two overlap on two cores. Purges hold the same lock, so the purged-record
    hashes read once here stay valid for the whole run.
    """
    with engine.connect() as connection:
        hashes = frozenset(connection.execute(select(purged_records.c.record_hash)).scalars())
    purged = PurgedRecords(hashes, key)

    def prepare(agency: str, path: Path) -> MappedExtract:
        progress(f"{agency}: reading", 0, 1)
        extract = read_extract(path)
        progress(f"{agency}: mapping", 0, 1)
        return map_extract(
            extract.rows,
            agency=agency,
            mapping=config.agencies[agency],
            config=config,
            row_numbers=extract.row_numbers,
            malformed=extract.malformed,
            purged=purged,
        )

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ipvi-ingest-read") as reader:
        pending = reader.submit(prepare, *plan[0])
        for position, (agency, _) in enumerate(plan):
            mapped = pending.result()
            if position + 1 < len(plan):
                pending = reader.submit(prepare, *plan[position + 1])
            report.files[agency] = _write_file(engine, report, agency, mapped, progress)
            del mapped


def _start_run(engine: Engine, folder: Path) -> int:
    with engine.begin() as connection:
        # We hold the lock, so a run still marked running died without finishing.
        connection.execute(
            update(ingest_runs)
            .where(ingest_runs.c.status == "running")
            .values(status="aborted", finished_at=datetime.now())
        )
        result = connection.execute(
            insert(ingest_runs).values(
                started_at=datetime.now(),
                status="running",
                source_dir=str(folder),
                rows_in=0,
                accepted=0,
                accepted_with_issues=0,
                quarantined=0,
                files={},
            )
        )
        return int(result.inserted_primary_key[0])


def _finish_run(engine: Engine, run_id: int, status: str, error: str | None) -> None:
    with engine.begin() as connection:
        connection.execute(
            update(ingest_runs)
            .where(ingest_runs.c.run_id == run_id)
            .values(status=status, finished_at=datetime.now(), error=error)
        )


def _write_file(
    engine: Engine,
    report: IngestReport,
    agency: str,
    mapped: MappedExtract,
    progress: ProgressFn,
) -> FileReport:
    """Store one mapped file and its run-log counts in one transaction."""
    file_report = FileReport(
        agency=agency,
        file=mapped.file,
        status="loaded",
        rows_in=mapped.rows_in,
        accepted=mapped.accepted,
        accepted_with_issues=mapped.accepted_with_issues,
        quarantined=mapped.quarantined,
        by_reason=mapped.by_reason(),
    )
    with engine.begin() as connection:
        _store(connection, mapped, agency, report.run_id, file_report, progress)
        files = {name: asdict(done) for name, done in report.files.items()}
        files[agency] = asdict(file_report)
        connection.execute(
            update(ingest_runs)
            .where(ingest_runs.c.run_id == report.run_id)
            .values(
                rows_in=ingest_runs.c.rows_in + file_report.rows_in,
                accepted=ingest_runs.c.accepted + file_report.accepted,
                accepted_with_issues=ingest_runs.c.accepted_with_issues
                + file_report.accepted_with_issues,
                quarantined=ingest_runs.c.quarantined + file_report.quarantined,
                files=files,
            )
        )
    log.info(
        "%s: %d rows in, %d accepted (%d with field issues), %d quarantined",
        agency,
        file_report.rows_in,
        file_report.accepted,
        file_report.accepted_with_issues,
        file_report.quarantined,
    )
    return file_report


def _store(
    connection: Connection,
    mapped: MappedExtract,
    agency: str,
    run_id: int,
    report: FileReport,
    progress: ProgressFn,
) -> None:
    if connection.dialect.name == "sqlite":
        # A large page cache keeps index updates of million-row files in memory.
        connection.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_CACHE_KB}")
    label = f"{agency}: writing"
    total = len(mapped.mentions) + len(mapped.events)
    done = 0

    def advance(rows: int) -> None:
        nonlocal done
        done += rows
        progress(label, done, total)

    versions = _upsert(
        connection,
        mentions,
        mention_versions,
        "record_id",
        mapped.mentions,
        agency,
        run_id,
        advance,
    )
    report.mentions_new, report.mentions_changed, report.mentions_unchanged = versions.counts
    event_result = _upsert(
        connection, events, event_versions, "event_id", mapped.events, agency, run_id, advance
    )
    report.events_new, report.events_changed, report.events_unchanged = event_result.counts

    issues = mapped.issues.merge(versions.stored, on="record_id", how="inner")
    issues["agency"] = agency
    issues["ingest_run_id"] = run_id
    bulk_insert(connection, field_issues, issues)
    report.field_issues_stored = len(issues)

    stored = set(
        connection.execute(
            select(quarantine.c.row_hash).where(quarantine.c.agency == agency)
        ).scalars()
    )
    fresh = mapped.quarantine[~mapped.quarantine["row_hash"].isin(stored)]
    if len(fresh):
        rows = fresh.assign(agency=agency, source_file=report.file, ingest_run_id=run_id)
        rows = rows.astype(object).where(rows.notna(), None)
        connection.execute(insert(quarantine), rows.to_dict(orient="records"))
    report.quarantine_stored = len(fresh)


@dataclass
class _Upserted:
    counts: tuple[int, int, int]  # new, changed, unchanged
    stored: pd.DataFrame  # key, version of each row written now


def _upsert(
    connection: Connection,
    current: Table,
    history: Table,
    key: str,
    rows: pd.DataFrame,
    agency: str,
    run_id: int,
    advance: Callable[[int], None],
) -> _Upserted:
    """Insert new keys, version changed ones (old version to ``history``), skip unchanged."""
    existing = pd.DataFrame(
        connection.execute(
            select(current.c[key], current.c.content_hash, current.c.version).where(
                current.c.agency == agency
            )
        ).all(),
        columns=[key, "old_hash", "old_version"],
    )
    merged = rows.merge(existing, on=key, how="left")
    is_new = merged["old_version"].isna().to_numpy()
    unchanged = ~is_new & (merged["content_hash"] == merged["old_hash"]).to_numpy()
    changed = ~is_new & ~unchanged
    if changed.any():
        keys = [{"key": value} for value in merged.loc[changed, key]]
        columns = [column.name for column in current.columns]
        source = select(*current.c, literal(run_id).label("superseded_by_run_id")).where(
            current.c[key] == bindparam("key")
        )
        connection.execute(
            insert(history).from_select([*columns, "superseded_by_run_id"], source), keys
        )
        connection.execute(delete(current).where(current.c[key] == bindparam("key")), keys)
    # In key order, each insert appends to the primary-key B-tree instead of splitting pages.
    write = merged[~unchanged]
    write = write.iloc[pc.sort_indices(pa.array(write[key].astype(TEXT).array)).to_numpy()]
    write["version"] = pd.to_numeric(write["old_version"]).fillna(0).astype(int) + 1
    write["ingest_run_id"] = run_id
    bulk_insert(connection, current, write.drop(columns=["old_hash", "old_version"]), advance)
    if unchanged.any():
        advance(int(unchanged.sum()))
    return _Upserted(
        counts=(int(is_new.sum()), int(changed.sum()), int(unchanged.sum())),
        stored=write[[key, "version"]],
    )
