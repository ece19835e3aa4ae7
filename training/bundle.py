"""The model bundle: everything scoring needs, saved together so serving cannot drift.

A bundle holds the fitted :class:`~training.models.RiskModel` and
:class:`~training.scorecard.Scorecard`, and as data: the feature list and definitions, the tier
rules and charge counting, the lethality markers, the band cut-points and uses, the decision lag
and other as-of settings, and the package version. It is saved as a folder (``model.pkl`` and
``bundle.json``) and registered with MLflow as one model version.
"""

from __future__ import annotations

import functools
import json
import pickle
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from ipvi.config import LethalityFlag, TierConfig, TrainingConfig
from ipvi.errors import IpviError
from training.bands import bands_payload
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


@dataclass
class ModelBundle:
    """A trained model with the settings it was trained under."""

    model: RiskModel
    scorecard: Scorecard
    features: list[str]
    settings: dict = field(default_factory=dict)

    @classmethod
    def from_config(
        cls, model: RiskModel, scorecard: Scorecard, features: list[str], config: TrainingConfig
    ) -> ModelBundle:
        """Freeze the parts of ``config`` that scoring reads."""
        settings = {
            "decision_lag_days": config.decision_lag_days,
            "offence_window_days": config.offence_window_days,
            "protective_order_days": config.protective_order_days,
            "probation_days": config.probation_days,
            "excluded_features": list(config.excluded_features),
            "tiers": config.tiers.model_dump(mode="json"),
            "lethality": [flag.model_dump(mode="json") for flag in config.lethality],
            "bands": bands_payload(config.bands),
            "reason_codes": config.reason_codes,
            "feature_definitions": feature_table().to_dict(orient="records"),
            "scorecard": scorecard.table().to_dict(orient="records"),
            "package_version": package_version(),
        }
        return cls(model=model, scorecard=scorecard, features=features, settings=settings)

    @functools.cached_property
    def tier_config(self) -> TierConfig:
        """The frozen tier rules (parsed once: every request reads them)."""
        return TierConfig.model_validate(self.settings["tiers"])

    @functools.cached_property
    def lethality(self) -> list[LethalityFlag]:
        """The frozen lethality markers (parsed once: every request reads them)."""
        return [LethalityFlag.model_validate(flag) for flag in self.settings["lethality"]]

    def save(self, folder: str | Path) -> Path:
        """Write the bundle to ``folder`` (created)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / MODEL_FILE, "wb") as handle:
            pickle.dump({"model": self.model, "scorecard": self.scorecard}, handle)
        payload = {"features": self.features, "settings": self.settings}
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
        return cls(
            model=fitted["model"],
            scorecard=fitted["scorecard"],
            features=payload["features"],
            settings=payload["settings"],
        )
