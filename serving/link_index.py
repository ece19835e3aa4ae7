"""The link index file the service's workers share: built once per linkage run, off-worker.

Building a link index reads and standardises every linked mention: at a million mentions that
takes a minute and a couple of GB, which a worker would keep as resident memory long after.
So the index is built by a separate process (``python -m serving.link_index PATH RUN_ID``,
with the same configuration and registry), written to ``PATH`` and loaded by every worker:
memory holds only the compact index, once per worker, and a second worker waits for the first
one's build instead of repeating it.

The file is a pickle in the service's private spool folder (mode 0600). It holds standardised
identifiers, like the registry it is built from, so it is named by the linkage run *and* the
last purge. ``ipvi link`` and ``ipvi purge`` build the file of the new state before they end
(:func:`prebuild_index`) and delete the old one, so a service on the same folder picks the
change up by loading a file within ``serving.link_refresh_seconds``; a service that finds no
file (the change was made elsewhere, or with ``--no-link-index``) builds it itself.
"""

from __future__ import annotations

import fcntl
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import desc, func, select

from ipvi.errors import IpviError
from ipvi.tables.ingest import purge_tombstones
from ipvi.tables.linkage import linkage_runs

LOCK_NAME = "link-index.lock"
BUILD_TIMEOUT_SECONDS = 1800


def index_path(folder: Path, version: str) -> Path:
    """Where the index of registry state ``version`` (:func:`index_version`) is kept."""
    return folder / f"link-index-{version}.pickle"


def index_version(run_id: str, last_purge: int | None) -> str:
    """The linkage run and the last purge: a purge changes the index without a new run."""
    return f"{run_id}-purge{last_purge or 0}"


def latest_run_id(session) -> str | None:
    """The newest successful linkage run."""
    return session.scalar(
        select(linkage_runs.c.run_id)
        .where(linkage_runs.c.status == "succeeded")
        .order_by(desc(linkage_runs.c.finished_at), desc(linkage_runs.c.run_id))
        .limit(1)
    )


def last_purge(session) -> int | None:
    """The newest purge tombstone's id (None before any purge)."""
    return session.scalar(select(func.max(purge_tombstones.c.tombstone_id)))


@contextmanager
def _building(folder: Path) -> Iterator[None]:
    """One process at a time builds or swaps index files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(folder / LOCK_NAME, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _ensure_file(
    folder: Path, run_id: str, last_purge: int | None, config_path: str | None = None
) -> Path:
    """The index file of (run, purge), built by a separate process (reading the configuration
    at ``config_path``, else the environment's) unless it exists; files of other versions are
    removed once it does. Called under :func:`_building`."""
    environment = {**os.environ, **({"IPVI_CONFIG": str(config_path)} if config_path else {})}
    path = index_path(folder, index_version(run_id, last_purge))
    if not path.exists():
        build = subprocess.run(
            [sys.executable, "-m", "serving.link_index", str(path), run_id],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_SECONDS,
            env=environment,
        )
        if build.returncode != 0:
            last = (build.stderr.strip().splitlines() or ["no message"])[-1]
            raise IpviError(f"building the link index failed: {last}")
    for stale in folder.glob("link-index-*.pickle"):
        if stale != path:
            stale.unlink(missing_ok=True)
    return path


def prebuild_index(folder: Path, engine, config_path: str | None = None) -> Path | None:
    """Build the index file of the registry's current state for the service to load (None
    when nothing is linked yet).

    ``ipvi link`` and ``ipvi purge`` call this before they end, so a service sharing
    ``folder`` (the configured ``serving.audit_spool_dir``) picks the new state up by loading a
    file, in seconds, instead of building it (a minute at a million mentions); and a purged
    person's identifiers leave the folder with the old file at once.
    """
    from ipvi.db import session_scope

    with session_scope(engine) as session:
        run_id, purged = latest_run_id(session), last_purge(session)
    if run_id is None:
        return None
    with _building(folder):
        return _ensure_file(folder, run_id, purged, config_path)


def prebuild_report(folder: Path, engine, config_path: str | None = None) -> dict:
    """:func:`prebuild_index`, timed, with a failure turned into a warning: the registry's
    change is stored whatever happens here, and a service that finds no file builds it.

    Returns
    -------
    dict
        ``link_index`` (the file, or None), ``link_index_seconds``, and ``warning`` (or None).
    """
    started = time.perf_counter()
    warning = None
    try:
        path = prebuild_index(folder, engine, config_path)
    except IpviError as error:
        warning = f"the service will build the link index itself: {error}"
        path = None
    return {
        "link_index": None if path is None else str(path),
        "link_index_seconds": round(time.perf_counter() - started, 2),
        "warning": warning,
    }


def shared_index(folder: Path, run_id: str, last_purge: int | None = None):
    """The :class:`~linkage.incremental.LinkIndex` of run ``run_id``, building its file if needed.

    One process builds at a time (a file lock); the others then load what it wrote.
    """
    with _building(folder):
        path = _ensure_file(folder, run_id, last_purge)
        with open(path, "rb") as handle:
            return pickle.load(handle)


def write_index(path: Path, run_id: str) -> None:
    """Build the index of the registry's current crosswalk and write it to ``path``; an error
    when the crosswalk is no longer that of run ``run_id`` (a newer run replaced it)."""
    from ipvi.config import load_config
    from ipvi.db import make_engine
    from linkage.run import load_link_index

    config = load_config()
    engine = make_engine(config.database_url)
    try:
        index = load_link_index(engine, config.linkage)
    finally:
        engine.dispose()
    if index.run_id_ != run_id:
        raise IpviError(f"linkage run {run_id} is no longer current; index not kept")
    # Written under a temporary name and renamed when complete: readers never see a part.
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        pickle.dump(index, handle, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(temporary, path)


if __name__ == "__main__":
    try:
        write_index(Path(sys.argv[1]), sys.argv[2])
    except IpviError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
