"""One typed configuration, loaded from YAML over packaged defaults and validated once.

Every stage reads its own section of :class:`Config`. The defaults in ``default_config.yaml``
work on the shipped sample; a user file given with ``--config`` (or ``IPVI_CONFIG``) overrides
any subset of keys. Unknown keys and bad values raise :class:`~ipvi.errors.ConfigError` naming
the key.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ipvi.errors import ConfigError
from ipvi.schema import EVENT_COLUMNS, MENTION_COLUMNS

DEFAULT_CONFIG_FILE = "default_config.yaml"


class StrictModel(BaseModel):
    """Base for every section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=False)


# --------------------------------------------------------------------------- paths, stores


class DatabaseConfig(StrictModel):
    url: str = "sqlite:///.ipvi/registry.sqlite"


class MlflowConfig(StrictModel):
    tracking_uri: str = "sqlite:///.ipvi/mlflow.db"
    artifact_location: str = ".ipvi/mlartifacts"
    model_name: str = "ipvi-risk"


class PathsConfig(StrictModel):
    home: str = ".ipvi"
    sample_dir: str = "data_samples"
    reports_dir: str = ".ipvi/reports"


# --------------------------------------------------------------------------- ingest

# Fields an agency mapping may fill: the canonical mention and event columns, plus a full
# name column that ingest splits into first / middle / last / suffix.
MAPPABLE_FIELDS: frozenset[str] = (
    frozenset(MENTION_COLUMNS) | frozenset(EVENT_COLUMNS) | {"full_name"}
) - {"agency", "dob_raw"}


class AgencyMapping(StrictModel):
    """How one agency's extract maps onto canonical mentions and events.

    One extract row is one person mentioned in one agency event.
    """

    file: str = Field(description="file name of the extract inside the ingest folder")
    record_prefix: str = Field(description="agency prefix of record and event ids, e.g. PD")
    columns: dict[str, str] = Field(description="canonical field -> extract column")
    date_formats: list[str] = Field(description="strptime formats for event dates, in order")
    dob_formats: list[str] = Field(description="strptime formats for dates of birth, in order")
    full_name_format: Literal["last_comma_first", "first_last"] | None = None
    values: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="canonical field -> {extract code: canonical value}"
    )
    constants: dict[str, str | bool] = Field(
        default_factory=dict, description="canonical field -> value for every row"
    )
    true_values: list[str] = Field(default_factory=lambda: ["Y", "YES", "1", "T", "TRUE"])
    false_values: list[str] = Field(default_factory=lambda: ["N", "NO", "0", "F", "FALSE", ""])

    @field_validator("columns", "values", "constants")
    @classmethod
    def _known_fields(cls, mapping: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(mapping) - MAPPABLE_FIELDS)
        if unknown:
            raise ValueError(f"unknown canonical field(s): {', '.join(unknown)}")
        return mapping


class IngestConfig(StrictModel):
    agencies: dict[str, AgencyMapping]
    dob_min_year: int = 1900
    min_age_years: int = 10
    max_age_years: int = 110
    lock_timeout_seconds: float = 30.0


# --------------------------------------------------------------------------- later stages
# Each stage owns its section below; keys are documented in default_config.yaml.


class LinkageConfig(StrictModel):
    model_config = ConfigDict(extra="allow")


class TrainingConfig(StrictModel):
    model_config = ConfigDict(extra="allow")


class FairnessPolicy(StrictModel):
    model_config = ConfigDict(extra="allow")


class ServingConfig(StrictModel):
    model_config = ConfigDict(extra="allow")


# --------------------------------------------------------------------------- root


class Config(StrictModel):
    database: DatabaseConfig = DatabaseConfig()
    mlflow: MlflowConfig = MlflowConfig()
    paths: PathsConfig = PathsConfig()
    ingest: IngestConfig
    linkage: LinkageConfig = LinkageConfig()
    training: TrainingConfig = TrainingConfig()
    fairness_policy: FairnessPolicy = FairnessPolicy()
    serving: ServingConfig = ServingConfig()

    @property
    def database_url(self) -> str:
        """The registry URL: ``IPVI_DATABASE_URL`` wins over the file."""
        return os.environ.get("IPVI_DATABASE_URL") or self.database.url

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI: ``MLFLOW_TRACKING_URI`` wins over the file."""
        return os.environ.get("MLFLOW_TRACKING_URI") or self.mlflow.tracking_uri

    def section_hash(self, section: str) -> str:
        """A stable SHA-256 of one section, e.g. the fairness policy stamped on every audit."""
        payload = json.dumps(getattr(self, section).model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()


def default_config_dict() -> dict[str, Any]:
    """The packaged defaults as plain data."""
    text = resources.files("ipvi").joinpath(DEFAULT_CONFIG_FILE).read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(root)"
    message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
    more = len(error.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"config key '{key}': {message}{suffix}"


def config_from_dict(data: dict[str, Any]) -> Config:
    """Validate a full configuration dictionary."""
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None


def load_config(path: str | Path | None = None) -> Config:
    """Load the packaged defaults, overridden by ``path`` (or ``IPVI_CONFIG``) when given."""
    data = default_config_dict()
    path = path or os.environ.get("IPVI_CONFIG")
    if path:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"config file not found: {file}")
        try:
            override = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {file} is not valid YAML: {error}") from None
        if not isinstance(override, dict):
            raise ConfigError(f"config file {file} must hold a mapping of sections")
        data = _deep_merge(data, override)
    return config_from_dict(data)
