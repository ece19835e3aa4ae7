"""The serving benchmark's anchor: a plain BentoML service scoring one row with an MLflow model.

``bench_serving.py`` saves a scikit-learn ``LogisticRegression`` as an MLflow model (pyfunc
flavour, ``predict_proba``) into its temporary folder and starts this file with ``bentoml serve``
beside the IPVI service, with the same number of workers, and sends it the same client load. It
is what a generic model service costs per request (HTTP, JSON, one pyfunc call on one row), so
our service's latency can be quoted as a ratio to it on the same machine in the same run: no
keys, audit log, histories or reason codes, and BentoML's defaults otherwise.

Environment: ``ANCHOR_MODEL_URI`` (the saved model's folder) and ``ANCHOR_WORKERS``.
"""

from __future__ import annotations

import os

import bentoml
import mlflow.pyfunc
import pandas as pd


@bentoml.service(name="anchor-logistic-regression", workers=int(os.environ["ANCHOR_WORKERS"]))
class AnchorService:
    """One probability for one row of named features."""

    def __init__(self) -> None:
        self.model = mlflow.pyfunc.load_model(os.environ["ANCHOR_MODEL_URI"])

    @bentoml.api(route="/v1/score")
    def score(self, row: dict[str, float]) -> dict[str, float]:
        probabilities = self.model.predict(pd.DataFrame([row]))
        return {"probability": float(probabilities[0][1])}
