"""A worker's spool: rows a request leaves, written to a local file and moved to the database later.

A request never waits for the database. :meth:`Spool.append` writes one JSON line to this
worker's file with one ``write`` call (so a ``kill -9`` loses nothing the kernel already has)
and a background thread hands spooled rows to :meth:`Spool.store` every ``flush_seconds``.
While the database is unreachable the files simply grow; they are flushed when it returns, by
this process or, after a crash, by the next one. A file is deleted only after its rows are
committed, so :meth:`Spool.store` must make a file flushed twice a no-op (each row carries its
own id). The audit log (:class:`serving.audit_log.AuditSpool`) and the issued scores
(:class:`IssuedScoreSpool`, in the folder :data:`ISSUED_FOLDER` inside it) each spool into
their own folder.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from ipvi.db import session_scope
from training.issued import store_issued

logger = logging.getLogger(__name__)

SPOOL_SUFFIX = ".jsonl"
PENDING_SUFFIX = ".pending"
ISSUED_FOLDER = "issued"  # the issued scores' spool, inside serving.audit_spool_dir


class Spool:
    """A worker's spool of rows and the thread that moves them into the database.

    Subclasses say how a batch of rows is stored (:meth:`store`).

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

    def store(self, session: Session, rows: list[dict]) -> int:
        """Store spooled ``rows`` in the caller's transaction; returns rows added."""
        raise NotImplementedError

    # ---------------------------------------------------------------- writing

    def append(self, rows: list[dict]) -> None:
        """Append rows (JSON lines; dates as ISO text) to this worker's spool file, in one
        write."""
        lines = "".join(json.dumps(row, separators=(",", ":"), default=str) + "\n" for row in rows)
        with self._lock:
            if self._fd is None:
                self._open()
            os.write(self._fd, lines.encode("utf-8"))

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
            rows = []
            for number, line in enumerate(lines, start=1):
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    logger.error("spool %s line %d is not JSON; left out", path.name, number)
            with session_scope(self.engine_getter()) as session:
                added = self.store(session, rows)
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
        self._thread = threading.Thread(
            target=self._run, name=f"ipvi-{type(self).__name__}-flush", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self._flush_quietly()

    def _flush_quietly(self) -> None:
        try:
            self.flush()
        except Exception as error:  # database unreachable: rows stay spooled for the next try
            logger.warning("%s not flushed yet: %s", type(self).__name__, type(error).__name__)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread and flush once more (rows stay spooled if the database is down)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._flush_quietly()


class IssuedScoreSpool(Spool):
    """A worker's spool of issued scores (:mod:`training.issued`): every ``/v1/score`` answer
    reaches ``issued_scores`` without the request waiting for the database."""

    def store(self, session: Session, rows: list[dict]) -> int:
        return store_issued(session, rows)
