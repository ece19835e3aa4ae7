"""Transactions and the lock: a killed ingest leaves the registry as it was before that file;
a concurrent ingest waits for the lock and gives up clearly; a dead holder's lock is taken over.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime

import pytest
from sqlalchemy import func, insert, select

from ingest.load import ingest_directory
from ingest.lock import registry_lock
from ipvi.bulk import CHUNK_ROWS
from ipvi.config import load_config
from ipvi.db import open_registry
from ipvi.errors import IpviError
from ipvi.tables.ingest import events, ingest_lock, ingest_runs, mentions
from tests.fixtures.ingest_extracts import write_extracts, write_large_probation

LARGE_ROWS = 2 * CHUNK_ROWS


def _by_agency(engine, table) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(table.c.agency, func.count()).group_by(table.c.agency)
        ).all()
    return dict(rows)


@pytest.mark.slow
def test_ingest_killed_mid_file_leaves_the_registry_as_before_that_file(db_url, tmp_path):
    folder = write_extracts(tmp_path / "x", agencies=("court",))
    write_large_probation(folder / "probation.csv", rows=LARGE_ROWS)
    engine = open_registry(db_url)
    process = subprocess.Popen(
        [sys.executable, "-m", "ipvi.cli", "ingest", str(folder)],
        env={**os.environ, "IPVI_DATABASE_URL": db_url},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Court (3 rows) is committed first; kill once probation has written its first chunk
        # inside its still-open transaction.
        for line in process.stderr:
            if line.startswith("probation: writing"):
                break
        assert process.poll() is None, "ingest finished before it could be killed"
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL

    assert _by_agency(engine, mentions) == {"court": 3}
    assert _by_agency(engine, events) == {"court": 3}
    with engine.connect() as connection:
        run = connection.execute(select(ingest_runs)).one()
    assert run.status == "running"
    assert run.files["court"]["status"] == "loaded" and "probation" not in run.files

    # The next ingest takes over the dead process's lock and loads the whole file.
    config = load_config().ingest
    config.lock_timeout_seconds = 5
    report = ingest_directory(engine, folder, config)
    assert report.files["probation"].mentions_new == LARGE_ROWS
    assert report.files["court"].mentions_unchanged == 3
    assert _by_agency(engine, mentions) == {"court": 3, "probation": LARGE_ROWS}
    with engine.connect() as connection:
        statuses = list(
            connection.execute(
                select(ingest_runs.c.status).order_by(ingest_runs.c.run_id)
            ).scalars()
        )
    assert statuses == ["aborted", "completed"]
    engine.dispose()


def test_concurrent_ingest_waits_for_the_lock_then_gives_up(db_url, tmp_path):
    engine = open_registry(db_url)
    folder = write_extracts(tmp_path / "x", agencies=("court",))
    config = load_config().ingest
    config.lock_timeout_seconds = 0.5
    started = time.monotonic()
    with registry_lock(engine, timeout=1), pytest.raises(IpviError, match="another ingest holds"):
        ingest_directory(engine, folder, config)
    assert time.monotonic() - started >= 0.5
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(mentions)).scalar_one() == 0
    # Released: the next ingest runs.
    assert ingest_directory(engine, folder, config).accepted == 3
    engine.dispose()


def test_lock_of_a_dead_process_is_taken_over(sqlite_url, tmp_path):
    engine = open_registry(sqlite_url)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    with engine.begin() as connection:
        connection.execute(
            insert(ingest_lock).values(
                name="ingest",
                host=socket.gethostname(),
                pid=int(dead.stdout),
                process_started=time.time() - 5,
                acquired_at=datetime.now(),
            )
        )
    config = load_config().ingest
    config.lock_timeout_seconds = 1
    report = ingest_directory(engine, write_extracts(tmp_path / "x", agencies=("court",)), config)
    assert report.accepted == 3
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(ingest_lock)).scalar_one() == 0
    engine.dispose()


def test_lock_of_another_host_is_respected(sqlite_url, tmp_path):
    engine = open_registry(sqlite_url)
    with engine.begin() as connection:
        connection.execute(
            insert(ingest_lock).values(
                name="ingest",
                host="some-other-host",
                pid=1,
                process_started=0.0,
                acquired_at=datetime(2026, 1, 1, 12, 0),
            )
        )
    config = load_config().ingest
    config.lock_timeout_seconds = 0.3
    folder = write_extracts(tmp_path / "x", agencies=("court",))
    with pytest.raises(IpviError, match=r"process 1 on some-other-host since 2026-01-01 12:00"):
        ingest_directory(engine, folder, config)
    engine.dispose()
