"""Who holds a registry lock row, and whether that holder is gone.

The ingest and linkage locks are rows naming their holder: the host, the process id and when
that process started (a reused pid is then told apart). On the same host a holder whose process
is gone is certainly dead; on another host no one can tell, so the linkage lock also carries a
lease its holder renews.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import psutil


def process_started(pid: int) -> float | None:
    """When process ``pid`` of this host started (None: no such process, or not ours to see)."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


@dataclass(frozen=True)
class LockHolder:
    """A lock row's holder: ``host``, ``pid`` and ``process_started``."""

    host: str | None
    pid: int | None
    process_started: float | None

    @classmethod
    def me(cls) -> LockHolder:
        """This process."""
        pid = os.getpid()
        return cls(host=socket.gethostname(), pid=pid, process_started=process_started(pid))

    def is_gone(self) -> bool:
        """Whether the holder's process is certainly gone: on this host, and no process with
        its id (or one started at another time: the id was reused). False for other hosts."""
        if self.host != socket.gethostname() or self.pid is None:
            return False
        started = process_started(self.pid)
        return started is None or abs(started - (self.process_started or 0.0)) > 1.0

    def describe(self) -> str:
        return f"process {self.pid} on {self.host}"
