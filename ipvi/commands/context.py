"""What every command shares: the configuration, the registry engine, console output."""

from __future__ import annotations

import functools
import json
import sys
from typing import Any

from ipvi.config import Config, load_config

_config_path: str | None = None


def set_config_path(path: str | None) -> None:
    global _config_path
    _config_path = path
    get_config.cache_clear()


@functools.cache
def get_config() -> Config:
    """The configuration for this invocation (defaults overridden by ``--config``)."""
    return load_config(_config_path)


def get_engine():
    """The registry engine, created and migrated to head if needed."""
    from ipvi.db import open_registry

    return open_registry(get_config().database_url)


def info(message: str) -> None:
    """A message for the operator: standard error, so standard output stays machine-readable."""
    print(message, file=sys.stderr)


def emit_json(payload: dict[str, Any]) -> None:
    """One JSON line on standard output."""
    print(json.dumps(payload, sort_keys=True, default=str))


def prebuild_link_index() -> dict:
    """Build the service's link index of the registry's current state (after ``ipvi link`` or
    ``ipvi purge``), so a running service loads it within ``serving.link_refresh_seconds``
    instead of building it. A failure is a warning only: the change is stored, and the service
    builds the index itself.

    Returns
    -------
    dict
        ``link_index`` (the file, or None) and ``link_index_seconds``.
    """
    import time
    from pathlib import Path

    from ipvi.errors import IpviError
    from serving.link_index import prebuild_index

    started = time.perf_counter()
    try:
        path = prebuild_index(
            Path(get_config().serving.audit_spool_dir), get_engine(), _config_path
        )
    except IpviError as error:
        info(f"warning: the service will build the link index itself: {error}")
        path = None
    return {
        "link_index": None if path is None else str(path),
        "link_index_seconds": round(time.perf_counter() - started, 2),
    }
