"""The link index file the service's workers share: built once per linkage run, off-worker.

Building a link index reads and standardises every linked mention: at a million mentions that
takes a minute and a couple of GB, which a worker would keep as resident memory long after.
So the index is built by a separate process (``python -m serving.link_index PATH``, with the
worker's environment, so the same configuration and registry), written to ``PATH`` and
loaded by every worker: memory holds only the compact index, once per worker, and a second
worker waits for the first one's build instead of repeating it.

The file is a pickle in the service's private spool folder (mode 0600), written and read only
by the service itself.
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


def index_path(folder: Path, run_id: str) -> Path:
    """Where the index of linkage run ``run_id`` is kept."""
    return folder / f"link-index-{run_id}.pickle"


def shared_index(folder: Path, run_id: str):
    """The :class:`~linkage.incremental.LinkIndex` of ``run_id``, building its file if needed.

    One process builds at a time (a file lock); the others then load what it wrote. Files of
    older runs are removed once the new one exists.
    """
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = index_path(folder, run_id)
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
            if not path.exists():  # the crosswalk moved on to a newer run meanwhile
                raise IpviError(f"linkage run {run_id} is no longer current; index not built")
        for stale in folder.glob("link-index-*.pickle"):
            if stale != path:
                stale.unlink(missing_ok=True)
    with open(path, "rb") as handle:
        return pickle.load(handle)


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
    # The run id names the file, so build under a temporary name and rename when complete.
    built = index_path(path.parent, index.run_id_)
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        pickle.dump(index, handle, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(temporary, built)


if __name__ == "__main__":
    try:
        write_index(Path(sys.argv[1]))
    except IpviError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
