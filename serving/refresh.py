"""A value a worker re-reads from the registry in the background, never on a request.

The API keys (:class:`serving.auth.KeyCache`) and the served version's re-audit standing
(:mod:`ipvi.reaudits`) are read once at start and again every few seconds by a daemon thread,
so a request only reads memory and the serving targets hold.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Refreshed(Generic[T]):
    """The value ``load()`` returns, re-read by a background thread every ``refresh_seconds``.

    Parameters
    ----------
    load : callable
        Returns the value; raising keeps the previous one (the database may be down).
    refresh_seconds : float
        How stale the value may get.
    name : str
        What is refreshed, for the thread's name and the log.
    """

    def __init__(self, load: Callable[[], T], refresh_seconds: float, name: str) -> None:
        self.load = load
        self.refresh_seconds = refresh_seconds
        self.name = name
        self._value: T | None = None
        self._loaded = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Re-read the value now; False when it could not be read."""
        try:
            value = self.load()
        except Exception as error:  # any driver error: keep serving with the last known value
            logger.warning("%s not refreshed: %s", self.name, type(error).__name__)
            return False
        with self._lock:
            self._value, self._loaded = value, True
        return True

    def start(self) -> None:
        """Load once and keep refreshing in a daemon thread."""
        if self._thread is not None:
            return
        self.refresh()
        self._thread = threading.Thread(target=self._run, name=f"ipvi-{self.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self.refresh_seconds)
            self.refresh()

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    def value(self) -> T | None:
        """The last value read (None before the first successful read)."""
        with self._lock:
            return self._value
