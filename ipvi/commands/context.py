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


def config_path() -> str | None:
    """The ``--config`` file of this invocation (None: the packaged defaults)."""
    return _config_path


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


def checked_engine(engine: str | None) -> str | None:
    """An ``--engine`` option's value (``local`` or ``spark``, any case), or None for the
    configured ``linkage.engine``."""
    from ipvi.errors import IpviError
    from linkage.engine import ENGINES

    if engine is not None and engine.lower() not in ENGINES:
        raise IpviError(f"--engine: give {' or '.join(ENGINES)}, not {engine!r}")
    return None if engine is None else engine.lower()


def prebuild_link_index() -> dict:
    """Build the service's link index of the registry's current state (after ``ipvi link``),
    so a running service loads it within ``serving.link_refresh_seconds`` instead of building
    it (:func:`serving.link_index.prebuild_report`; a failure is a warning only).

    Returns
    -------
    dict
        ``link_index`` (the file, or None) and ``link_index_seconds``.
    """
    from pathlib import Path

    from serving.link_index import prebuild_report

    report = prebuild_report(Path(get_config().serving.audit_spool_dir), get_engine(), _config_path)
    warning = report.pop("warning")
    if warning:
        info(f"warning: {warning}")
    return report


def site_key(*, create: bool = False):
    """The site secret (:mod:`ipvi.site_key`); ``create`` makes the key file when missing
    (commands that write hashes or the audit log)."""
    from ipvi.site_key import load_site_key

    return load_site_key(get_config().paths.audit_key_file, create=create)
