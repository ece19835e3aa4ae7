"""The registry lock that keeps two ingests from writing at once.

PostgreSQL: a session-level advisory lock on a dedicated connection (per schema), which the
server releases by itself when the process dies. SQLite: a row in ``ingest_lock`` naming the
holder's host and process; a row whose process is gone (killed mid-file, say) is stale and is
taken over, so a crash never wedges the registry.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import Engine, delete, insert, select, text
from sqlalchemy.exc import IntegrityError

from ipvi.errors import IpviError
from ipvi.locks import LockHolder
from ipvi.tables.ingest import ingest_lock

LOCK_NAME = "ingest"
POLL_SECONDS = 0.2


def _is_stale(row) -> bool:
    """A lock row is stale when its process on this host is gone (or its pid was reused); on
    another machine no one can tell, so it is waited for."""
    return LockHolder(row.host, row.pid, row.process_started).is_gone()


@contextmanager
def registry_lock(engine: Engine, *, timeout: float) -> Iterator[None]:
    """Hold the ingest lock for the duration of the block.

    Parameters
    ----------
    engine : Engine
        The registry.
    timeout : float
        Seconds to wait for another ingest to finish before giving up with an
        :class:`~ipvi.errors.IpviError`.
    """
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine, timeout=timeout):
            yield
    else:
        with _row_lock(engine, timeout=timeout):
            yield


def _busy(timeout: float, holder: str) -> IpviError:
    return IpviError(
        f"another ingest holds the registry lock ({holder}); gave up after {timeout:g} s "
        "(ingest.lock_timeout_seconds)"
    )


@contextmanager
def _advisory_lock(engine: Engine, *, timeout: float) -> Iterator[None]:
    key = text("SELECT hashtext('ipvi.ingest.' || current_schema())")
    with engine.connect() as connection:
        lock_key = connection.execute(key).scalar_one()
        deadline = time.monotonic() + timeout
        while not connection.execute(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": lock_key}
        ).scalar_one():
            if time.monotonic() > deadline:
                raise _busy(timeout, "a PostgreSQL advisory lock")
            time.sleep(POLL_SECONDS)
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": lock_key})
            connection.commit()


@contextmanager
def _row_lock(engine: Engine, *, timeout: float) -> Iterator[None]:
    holder = LockHolder.me()
    me = {
        "name": LOCK_NAME,
        "host": holder.host,
        "pid": holder.pid,
        "process_started": holder.process_started,
    }
    deadline = time.monotonic() + timeout
    while True:
        holder = _try_row_lock(engine, me)
        if holder is None:
            break
        if time.monotonic() > deadline:
            raise _busy(timeout, holder)
        time.sleep(POLL_SECONDS)
    try:
        yield
    finally:
        with engine.begin() as connection:
            connection.execute(
                delete(ingest_lock).where(
                    ingest_lock.c.name == LOCK_NAME, ingest_lock.c.pid == me["pid"]
                )
            )


def _try_row_lock(engine: Engine, me: dict) -> str | None:
    """Take the lock row; return a description of the live holder when someone else has it."""
    try:
        with engine.begin() as connection:
            row = connection.execute(
                select(ingest_lock).where(ingest_lock.c.name == LOCK_NAME)
            ).first()
            if row is not None and not _is_stale(row):
                return f"process {row.pid} on {row.host} since {row.acquired_at:%Y-%m-%d %H:%M:%S}"
            if row is not None:
                connection.execute(delete(ingest_lock).where(ingest_lock.c.name == LOCK_NAME))
            connection.execute(insert(ingest_lock).values(**me, acquired_at=datetime.now()))
    except IntegrityError:  # another process inserted its row between our read and write
        return "a process that took it just now"
    return None
