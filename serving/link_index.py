"""The link index file the service's workers share: built once per linkage run, off-worker.

Building a link index reads and standardises every linked mention: at a million mentions that
takes a minute and a couple of GB, which a worker would keep as resident memory long after.
So the index is built by a separate process (``python -m serving.link_index PATH``, with the
worker's environment, so the same configuration and registry), written to ``PATH`` and
loaded by every worker: memory holds only the compact index, once per worker, and a second
worker waits for the first one's build instead of repeating it.

The file is a pickle in the service's private spool folder (mode 0600), written and read only
by the service itself. It holds standardised identifiers, like the registry it is built from,
so it is named by the linkage run *and* the last purge: ``ipvi purge`` makes the workers build
a new one (and delete the old) within ``serving.link_refresh_seconds``.
"""

from __future__ import annotations

import fcntl
import os
import pickle
import subprocess
import sys
from pathlib import Path

from ipvi.errors import IpviError

LOCK_NAME = "link-index.lock"
BUILD_TIMEOUT_SECONDS = 1800


def index_path(folder: Path, version: str) -> Path:
    """Where the index of registry state ``version`` (:func:`index_version`) is kept."""
    return folder / f"link-index-{version}.pickle"


def index_version(run_id: str, last_purge: int | None) -> str:
    """The linkage run and the last purge: a purge changes the index without a new run."""
    return f"{run_id}-purge{last_purge or 0}"


def shared_index(folder: Path, run_id: str, last_purge: int | None = None):
    """The :class:`~linkage.incremental.LinkIndex` of run ``run_id``, building its file if needed.

    One process builds at a time (a file lock); the others then load what it wrote. Files of
    other versions (older runs, or from before a purge) are removed once the new one exists.
    """
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = index_path(folder, index_version(run_id, last_purge))
    with open(folder / LOCK_NAME, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            build = subprocess.run(
                [sys.executable, "-m", "serving.link_index", str(path)],
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT_SECONDS,
            )
            if build.returncode != 0:
                last = (build.stderr.strip().splitlines() or ["no message"])[-1]
                raise IpviError(f"building the link index failed: {last}")
        for stale in folder.glob("link-index-*.pickle"):
            if stale != path:
                stale.unlink(missing_ok=True)
        with open(path, "rb") as handle:
            index = pickle.load(handle)
        if index.run_id_ != run_id:  # a new run replaced the crosswalk during the build
            path.unlink()
            raise IpviError(f"linkage run {run_id} is no longer current; index not kept")
    return index


def write_index(path: Path) -> None:
    """Build the index of the registry's current crosswalk and write it to ``path``."""
    from ipvi.config import load_config
    from ipvi.db import make_engine
    from linkage.run import load_link_index

    config = load_config()
    engine = make_engine(config.database_url)
    try:
        index = load_link_index(engine, config.linkage)
    finally:
        engine.dispose()
    # Written under a temporary name and renamed when complete: readers never see a part.
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        pickle.dump(index, handle, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(temporary, path)


if __name__ == "__main__":
    try:
        write_index(Path(sys.argv[1]))
    except IpviError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
