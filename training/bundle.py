"""The model bundle: everything scoring needs, saved together so serving cannot drift.

A bundle holds the fitted :class:`~training.models.RiskModel` and
:class:`~training.scorecard.Scorecard`, and as data (:class:`ScoringSettings`, frozen): the
feature definitions, the tier rules and charge counting, the lethality markers, the band
cut-points and uses, the decision lag and other as-of settings, and the package version. It is
saved as a folder (``model.pkl`` and ``bundle.json``) and registered with MLflow as one model
version.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from ipvi.config import BandConfig, LethalityFlag, TierConfig, TrainingConfig
from ipvi.errors import IpviError
from training.features import feature_table
from training.models import RiskModel
from training.scorecard import Scorecard

MODEL_FILE = "model.pkl"
SETTINGS_FILE = "bundle.json"


def package_version() -> str:
    """The installed ipvi version."""
    try:
        return version("ipvi")
    except PackageNotFoundError:
        return "0+unknown"


class ScoringSettings(BaseModel):
    """The settings a model version scores under, taken from the training configuration
    (``training.*``) when it was trained and never from the configuration of the day."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    decision_lag_days: int
    offence_window_days: int
    protective_order_days: int
    probation_days: int
    excluded_features: tuple[str, ...]
    tiers: TierConfig
    lethality: tuple[LethalityFlag, ...]
    bands: tuple[BandConfig, ...]
    reason_codes: int
    feature_definitions: tuple[dict, ...]
    scorecard: tuple[dict, ...]
    package_version: str

    @classmethod
    def from_config(cls, config: TrainingConfig, scorecard: Scorecard) -> ScoringSettings:
        return cls(
            decision_lag_days=config.decision_lag_days,
            offence_window_days=config.offence_window_days,
            protective_order_days=config.protective_order_days,
            probation_days=config.probation_days,
            excluded_features=tuple(config.excluded_features),
            tiers=config.tiers,
            lethality=tuple(config.lethality),
            bands=tuple(config.bands),
            reason_codes=config.reason_codes,
            feature_definitions=tuple(feature_table().to_dict(orient="records")),
            scorecard=tuple(scorecard.table().to_dict(orient="records")),
            package_version=package_version(),
        )

    def bands_payload(self) -> list[dict]:
        """The bands as plain data (registry tags, the model card)."""
        return [band.model_dump() for band in self.bands]


@dataclass
class ModelBundle:
    """A trained model with the settings it was trained under."""

    model: RiskModel
    scorecard: Scorecard
    features: list[str]
    settings: ScoringSettings

    @classmethod
    def from_config(
        cls, model: RiskModel, scorecard: Scorecard, features: list[str], config: TrainingConfig
    ) -> ModelBundle:
        """Freeze the parts of ``config`` that scoring reads."""
        return cls(
            model=model,
            scorecard=scorecard,
            features=features,
            settings=ScoringSettings.from_config(config, scorecard),
        )

    def save(self, folder: str | Path) -> Path:
        """Write the bundle to ``folder`` (created)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / MODEL_FILE, "wb") as handle:
            pickle.dump({"model": self.model, "scorecard": self.scorecard}, handle)
        payload = {"features": self.features, "settings": self.settings.model_dump(mode="json")}
        (folder / SETTINGS_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> ModelBundle:
        """Read a bundle written by :meth:`save`."""
        folder = Path(folder)
        if not (folder / MODEL_FILE).is_file() or not (folder / SETTINGS_FILE).is_file():
            raise IpviError(f"not a model bundle: {folder}")
        with open(folder / MODEL_FILE, "rb") as handle:
            fitted = pickle.load(handle)  # our own artifact, written by save()
        payload = json.loads((folder / SETTINGS_FILE).read_text())
        try:
            settings = ScoringSettings.model_validate(payload["settings"])
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise IpviError(
                f"model bundle {folder}: {SETTINGS_FILE} setting '{where}': {first['msg']}"
            ) from None
        return cls(
            model=fitted["model"],
            scorecard=fitted["scorecard"],
            features=payload["features"],
            settings=settings,
        )
