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
