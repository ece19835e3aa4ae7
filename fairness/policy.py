"""The fairness policy: loading a policy file, its hash, and how it differs from the defaults.

The policy is the ``fairness_policy`` section of the one YAML configuration
(:class:`ipvi.config.FairnessPolicy`). A generic audit may take its own policy file, holding
either that section alone or a whole configuration with a ``fairness_policy`` key; keys it does
not set keep their shipped defaults.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ipvi.config import (
    FairnessPolicy,
    _deep_merge,
    config_from_dict,
    default_config_dict,
    read_yaml_mapping,
)
from ipvi.errors import IpviError

SECTION = "fairness_policy"


def default_policy() -> FairnessPolicy:
    """The shipped default policy (the ``fairness_policy`` section of the packaged YAML)."""
    return FairnessPolicy.model_validate(default_config_dict()[SECTION])


def load_policy(path: str | Path) -> FairnessPolicy:
    """Read a policy file over the shipped defaults; a bad key is an error naming it."""
    file = Path(path)
    data = read_yaml_mapping(file, what="policy", error=IpviError)
    section = data.get(SECTION, data)
    if not isinstance(section, dict):
        raise IpviError(f"policy file {file}: '{SECTION}' must be a mapping")
    config = default_config_dict()
    config[SECTION] = _deep_merge(config[SECTION], section)
    return config_from_dict(config).fairness_policy


def policy_hash(policy: FairnessPolicy) -> str:
    """SHA-256 of the policy, the same digest as ``Config.section_hash("fairness_policy")``."""
    payload = json.dumps(policy.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def policy_changes(policy: FairnessPolicy, defaults: FairnessPolicy | None = None) -> dict:
    """Every policy value that differs from the shipped defaults: dotted key -> both values.

    Examples
    --------
    >>> changed = default_policy().model_copy(update={"decide_by": "point"})
    >>> policy_changes(changed)
    {'decide_by': {'value': 'point', 'default': 'interval'}}
    """
    now = _flatten(policy.model_dump(mode="json"))
    shipped = _flatten((defaults or default_policy()).model_dump(mode="json"))
    return {
        key: {"value": now.get(key), "default": shipped.get(key)}
        for key in sorted(set(now) | set(shipped))
        if now.get(key) != shipped.get(key)
    }
