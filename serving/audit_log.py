"""The append-only, hash-chained audit log, written through a local spool.

Every request to the service leaves one row: time, key name, endpoint, pseudonymous person ids,
model version and outcome. Rows are chained: each row's hash covers its content and the previous
row's hash, so editing or deleting a row breaks every hash after it (:func:`verify_chain`).

A request never waits for the database: :class:`AuditSpool` appends the row to a local file (one
per worker process, written with one ``write`` call, so a ``kill -9`` loses nothing the kernel
already has) and a background thread moves spooled rows into the database every
``serving.audit_flush_seconds``. While the database is unreachable the spool simply grows; it is
flushed when the database returns, by this process or, after a crash, by the next one. Each row
carries an ``entry_id`` so flushing a file twice is a no-op.

The log is exempt from purge: :func:`purge_step` appends a chained tombstone instead.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.orm import Session

from ipvi.db import session_scope
from ipvi.tables.serving import audit_chain_head, audit_log

logger = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
SPOOL_SUFFIX = ".jsonl"
PENDING_SUFFIX = ".pending"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class AuditEntry:
    """One audit row before it is chained: what happened, never who the person is."""

    endpoint: str
    outcome: str
    key_name: str | None = None
    person_ids: list[str] = field(default_factory=list)
    model_version: str | None = None
    status_code: int | None = None
    kind: str = "request"
    event_time: str = field(default_factory=lambda: _now().isoformat(timespec="microseconds"))
    entry_id: str = field(default_factory=lambda: str(uuid.uuid4()))


_HASHED_FIELDS = (
    "entry_id",
    "kind",
    "event_time",
    "key_name",
    "endpoint",
    "person_ids",
    "model_version",
    "status_code",
    "outcome",
)


def chain_hash(prev_hash: str, seq: int, entry: dict) -> str:
    """SHA-256 over the previous hash, the sequence number and the row's content."""
    content = {name: entry[name] for name in _HASHED_FIELDS}
    payload = json.dumps([prev_hash, seq, content], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def append_entries(session: Session, entries: Iterable[AuditEntry | dict]) -> int:
    """Chain ``entries`` onto the log in order; entries already there are skipped.

    The head row is updated first, which locks it: concurrent appenders from several worker
    processes wait for each other on SQLite and PostgreSQL alike.

    Returns
    -------
    int
        The number of rows added.
    """
    rows = [asdict(entry) if isinstance(entry, AuditEntry) else dict(entry) for entry in entries]
    if not rows:
        return 0
    session.execute(
        update(audit_chain_head)
        .where(audit_chain_head.c.id == 1)
        .values(seq=audit_chain_head.c.seq)
    )
    head = session.execute(
        select(audit_chain_head.c.seq, audit_chain_head.c.row_hash).where(
            audit_chain_head.c.id == 1
        )
    ).one()
    ids = [row["entry_id"] for row in rows]
    present: set[str] = set()
    for start in range(0, len(ids), 500):
        present.update(
            session.scalars(
                select(audit_log.c.entry_id).where(
                    audit_log.c.entry_id.in_(ids[start : start + 500])
                )
            )
        )
    seq, prev_hash = head.seq, head.row_hash
    values = []
    for row in rows:
        if row["entry_id"] in present:
            continue
        present.add(row["entry_id"])
        seq += 1
        row_hash = chain_hash(prev_hash, seq, row)
        values.append(
            {
                **{name: row[name] for name in _HASHED_FIELDS},
                "event_time": datetime.fromisoformat(row["event_time"]),
                "seq": seq,
                "prev_hash": prev_hash,
                "row_hash": row_hash,
            }
        )
        prev_hash = row_hash
    if values:
        session.execute(insert(audit_log), values)
        session.execute(
            update(audit_chain_head)
            .where(audit_chain_head.c.id == 1)
            .values(seq=seq, row_hash=prev_hash)
        )
    return len(values)


@dataclass(frozen=True)
class ChainReport:
    """The result of :func:`verify_chain`."""

    ok: bool
    rows: int
    first_bad_seq: int | None = None


def verify_chain(session: Session) -> ChainReport:
    """Recompute every hash in order; the first row whose hash or link is wrong is reported."""
    prev_hash, expected_seq, count = GENESIS_HASH, 0, 0
    result = session.execute(select(audit_log).order_by(audit_log.c.seq)).mappings()
    for row in result:
        expected_seq += 1
        count += 1
        entry = dict(row)
        entry["event_time"] = row["event_time"].isoformat(timespec="microseconds")
        if (
            row["seq"] != expected_seq
            or row["prev_hash"] != prev_hash
            or chain_hash(prev_hash, row["seq"], entry) != row["row_hash"]
        ):
            return ChainReport(ok=False, rows=count, first_bad_seq=row["seq"])
        prev_hash = row["row_hash"]
    head = session.execute(
        select(audit_chain_head.c.seq, audit_chain_head.c.row_hash).where(
            audit_chain_head.c.id == 1
        )
    ).one()
    if (head.seq, head.row_hash) != (expected_seq, prev_hash):  # rows deleted from the end
        return ChainReport(ok=False, rows=count, first_bad_seq=expected_seq + 1)
    return ChainReport(ok=True, rows=count)


def purge_step(session: Session, target) -> dict[str, int]:
    """Purge step of the serving stage (:mod:`ipvi.purge`): nothing is removed.

    Audit-log and decision rows hold pseudonymous ids only and stay as the record of what was
    done; a chained tombstone records that a purge ran, with the one-way hashes of the target
    (never its ids), so the chain still verifies.

    Parameters
    ----------
    target : ipvi.purge.PurgeTarget
        ``person_id`` and/or ``record_ids``.
    """
    from ipvi.purge import hash_identifier

    hashed = [hash_identifier(target.person_id)] if target.person_id else []
    hashed += [hash_identifier(record_id) for record_id in target.record_ids]
    append_entries(
        session,
        [
            AuditEntry(
                kind="purge_tombstone",
                endpoint="ipvi purge",
                outcome=f"purge of {len(target.record_ids)} record(s); audit rows kept",
                person_ids=hashed,
            )
        ],
    )
    return {"audit_log": 0, "decisions": 0}


class AuditSpool:
    """A worker's spool of audit rows and the thread that moves them into the database.

    Parameters
    ----------
    directory : str or Path
        Shared by every worker; each worker writes its own file, locked while it is in use.
    engine_getter : callable
        Returns the registry engine to flush into.
    flush_seconds : float
        How often spooled rows are moved into the database.
    """

    def __init__(
        self,
        directory: str | Path,
        engine_getter: Callable[[], Engine],
        flush_seconds: float,
    ) -> None:
        self.directory = directory
        self.engine_getter = engine_getter
        self.flush_seconds = flush_seconds
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._path: Path | None = None
        self._sequence = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- writing

    def record(self, entry: AuditEntry) -> None:
        """Append one row to this worker's spool file with a single write."""
        line = (json.dumps(asdict(entry), separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            if self._fd is None:
                self._open()
            os.write(self._fd, line)

    def _open(self) -> None:
        folder = Path(self.directory)
        folder.mkdir(parents=True, exist_ok=True)
        self._sequence += 1
        stem = f"spool-{os.getpid()}-{uuid.uuid4().hex[:8]}-{self._sequence}"
        # Created under a temporary name and locked before it is visible to other flushers.
        temporary = folder / f"{stem}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = folder / f"{stem}{SPOOL_SUFFIX}"
        os.rename(temporary, path)
        self._fd, self._path = fd, path

    def _rotate(self) -> None:
        """Hand the current file over to flushing; the next row starts a new file."""
        with self._lock:
            if self._fd is None:
                return
            pending = self._path.with_suffix(PENDING_SUFFIX)
            os.rename(self._path, pending)
            os.fsync(self._fd)
            os.close(self._fd)  # releases the lock: any flusher may take it now
            self._fd, self._path = None, None

    # ---------------------------------------------------------------- flushing

    def flush(self) -> int:
        """Move every unlocked spool file into the database; returns rows added.

        Files of this worker are rotated first; files left by crashed workers are taken too.
        A file is deleted only after its rows are committed.
        """
        self._rotate()
        folder = Path(self.directory)
        if not folder.is_dir():
            return 0
        added = 0
        files = sorted(folder.glob(f"*{PENDING_SUFFIX}")) + sorted(folder.glob(f"*{SPOOL_SUFFIX}"))
        for path in files:
            added += self._flush_file(path)
        return added

    def _flush_file(self, path: Path) -> int:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return 0
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # a live worker's current file, or another flusher's
            with os.fdopen(os.dup(fd), "rb") as handle:
                lines = handle.read().splitlines()
            entries = []
            for number, line in enumerate(lines, start=1):
                try:
                    entries.append(json.loads(line))
                except json.JSONDecodeError:
                    logger.error("audit spool %s line %d is not JSON; left out", path.name, number)
            with session_scope(self.engine_getter()) as session:
                added = append_entries(session, entries)
            path.unlink(missing_ok=True)
            return added
        finally:
            os.close(fd)

    def pending_rows(self) -> int:
        """Rows waiting in spool files (for /readyz and tests)."""
        folder = Path(self.directory)
        if not folder.is_dir():
            return 0
        total = 0
        for path in folder.iterdir():
            if path.suffix in (SPOOL_SUFFIX, PENDING_SUFFIX):
                try:
                    total += path.read_bytes().count(b"\n")
                except FileNotFoundError:
                    continue
        return total

    def start(self) -> None:
        """Flush in a daemon thread every ``flush_seconds`` until :meth:`close`."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="ipvi-audit-flush", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self._flush_quietly()

    def _flush_quietly(self) -> None:
        try:
            self.flush()
        except Exception as error:  # database unreachable: rows stay spooled for the next try
            logger.warning("audit spool not flushed yet: %s", type(error).__name__)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread and flush once more (rows stay spooled if the database is down)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._flush_quietly()


class AuditMiddleware:
    """ASGI middleware writing one audit row per request to a non-public path.

    The endpoint adds what only it knows to the request state (``audit_person_ids``,
    ``audit_model_version``, ``audit_outcome``); the key name comes from the auth middleware;
    the status code from the response itself, so refused requests (401, 403, 413, 429) are
    logged too.

    Parameters
    ----------
    app : ASGI app
        The application behind it.
    spool : callable
        Returns the process's :class:`AuditSpool`.
    is_public : callable
        Paths for which no row is written (health probes, metrics, the OpenAPI document).
    """

    def __init__(self, app, *, spool: Callable[[], AuditSpool], is_public) -> None:
        self.app = app
        self.spool = spool
        self.is_public = is_public

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or self.is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        status = {"code": None}

        async def send_and_watch(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            code = status["code"]
            self.spool().record(
                AuditEntry(
                    endpoint=f"{scope.get('method', '')} {scope['path']}"[:200],
                    key_name=state.get("api_key_name"),
                    person_ids=list(state.get("audit_person_ids", [])),
                    model_version=state.get("audit_model_version"),
                    status_code=code,
                    outcome=state.get("audit_outcome") or _outcome(code),
                )
            )


def _outcome(code: int | None) -> str:
    if code is None:
        return "no response (client went away or server error)"
    if code < 400:
        return "ok"
    return "refused" if code < 500 else "failed"
