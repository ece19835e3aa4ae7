"""A throw-away MLflow store whose champion is trained on toy histories.

For tests and benchmarks of the service, which need a registered champion but not a meaningful
one (:func:`synth.histories.toy_history`). The model is trained, logged and registered exactly
as ``ipvi train`` does, then promoted with ``forced=True`` (no fairness audit of toy data).
"""

from __future__ import annotations

from pathlib import Path

from fairness.promotion import set_champion
from ipvi.config import load_config
from ipvi.site_key import load_site_key
from synth.histories import toy_history
from training.pipeline import train
from training.registry import log_training_run
from training.result import summary

MODEL_NAME = "ipvi-risk"


def toy_champion(folder: Path, *, persons: int = 1000, reason: str = "toy model") -> dict:
    """Train on ``persons`` toy histories, register the model in ``folder`` and promote it.

    Returns
    -------
    dict
        ``tracking_uri``, ``model_version`` and ``run_id``.
    """
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    result = train(*toy_history(persons, seed=0), load_config().training)
    info = log_training_run(
        result,
        tracking_uri=uri,
        artifact_location=str(folder / "artifacts"),
        model_name=MODEL_NAME,
        summary=summary(result),
        params={"source": "toy_history"},
        key=load_site_key(folder / "audit.key", create=True),
    )
    set_champion(MODEL_NAME, info["model_version"], reason=reason, forced=True, tracking_uri=uri)
    return {"tracking_uri": uri, "model_version": info["model_version"], "run_id": info["run_id"]}
