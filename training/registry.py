"""MLflow: one run per training, a registered model version, and the aliases.

A run logs parameters (settings only, never names, dates of birth or addresses), metrics, the
data fingerprint, the feature definitions, plots (calibration, ROC, lift) and the model card. The
model bundle (:mod:`training.bundle`) is registered as a pyfunc model under ``ipvi-risk`` with
a signature and a fixed synthetic input example, and gets the alias ``challenger``.

Functions other stages call (the ``champion`` alias is moved only by the fairness gate,
:func:`fairness.promotion.promote`):

- :func:`registered_version` finds a version by number or alias, or says there is none;
  :func:`require_package_version` refuses one trained with another package version.
- :func:`version_info` reads a version's bundled band cut-points and uses, data fingerprint,
  run id, package version and feature definitions.
- :func:`load_bundle` loads a version's bundle (used by :class:`training.scoring.RiskScorer`).
- :func:`purge_trained_persons` takes purged persons out of the versions' lists of the persons
  they were trained on (``ipvi purge``).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ipvi.errors import IpviError
from ipvi.site_key import SiteKey, legacy_hash
from training.bundle import ModelBundle, package_version
from training.features import FEATURES, feature_table
from training.result import TrainResult

EXPERIMENT = "ipvi-risk"
BUNDLE_ARTIFACT = "bundle"


def _mlflow(tracking_uri: str):
    """MLflow pointed at ``tracking_uri`` (the registry too)."""
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return mlflow


def _artifact_uri(location: str) -> str:
    """A URI for an artifact location: local paths become absolute ``file:`` URIs."""
    if "://" in location or location.startswith("file:"):
        return location
    return Path(location).resolve().as_uri()


def input_example(features: list[str]) -> pd.DataFrame:
    """A fixed synthetic record (no real person): a first charged offence at age 34."""
    values = {name: 0.0 for name in (f.name for f in FEATURES)}
    values.update(
        {
            "prior_ipv_offences": 1.0,
            "prior_ipv_offences_3y": 1.0,
            "prior_ipv_charges": 1.0,
            "prior_ipv_charges_3y": 1.0,
            "days_since_last_ipv": 400.0,
            "index_injury": 1.0,
            "distinct_victims": 1.0,
            "distinct_victims_3y": 1.0,
            "age": 34.0,
        }
    )
    return pd.DataFrame([{name: values[name] for name in features}])


def _pyfunc_class():
    import mlflow.pyfunc

    class RiskPyfunc(mlflow.pyfunc.PythonModel):
        """The bundle as a pyfunc model: feature rows in, calibrated probabilities out."""

        def load_context(self, context) -> None:
            self.bundle = ModelBundle.load(context.artifacts[BUNDLE_ARTIFACT])

        def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
            return self.bundle.model.predict_proba(model_input[self.bundle.features])

    return RiskPyfunc


def _plots(
    folder: Path, y: np.ndarray, probability: np.ndarray, curve: dict, lift: list
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    paths = []
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--")
    ax.plot(curve["mean_probability"], curve["observed_rate"], marker="o")
    ax.set(xlabel="predicted probability", ylabel="observed rate", title="Calibration (test)")
    paths.append(folder / "calibration.png")
    fig.savefig(paths[-1], dpi=80)
    plt.close(fig)
    fpr, tpr, _ = roc_curve(y, probability)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--")
    ax.plot(fpr, tpr)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test)")
    paths.append(folder / "roc.png")
    fig.savefig(paths[-1], dpi=80)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(range(1, len(lift) + 1), lift)
    ax.set(xlabel="decile (highest scores first)", ylabel="lift", title="Lift by decile (test)")
    paths.append(folder / "lift.png")
    fig.savefig(paths[-1], dpi=80)
    plt.close(fig)
    return paths


def _flat_metrics(metrics: dict) -> dict[str, float]:
    flat: dict[str, float] = {}
    for block, values in metrics.items():
        for key, value in values.items():
            if isinstance(value, int | float) and value is not None and np.isfinite(value):
                flat[f"{block}_{key}"] = float(value)
            elif key.endswith("_ci") and isinstance(value, list) and np.all(np.isfinite(value)):
                flat[f"{block}_{key}_low"] = float(value[0])
                flat[f"{block}_{key}_high"] = float(value[1])
    return flat


def log_training_run(
    result: TrainResult,
    *,
    tracking_uri: str,
    model_name: str,
    alias: str = "challenger",
    artifact_location: str,
    summary: dict,
    params: dict,
    key: SiteKey,
) -> dict:
    """Log one training run, register its bundle and set ``alias``.

    The persons it was trained on are logged as keyed pseudonyms (``trained_persons.json``,
    :func:`trained_persons_artifact`), so ``ipvi purge`` can tell which versions a person's
    data went into while no id can be read back or tried against the list without the key.

    Returns
    -------
    dict
        ``run_id``, ``model_version``, ``model_name``.
    """
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    from training.model_card import model_card

    mlflow = _mlflow(tracking_uri)
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        # Artifacts go where the configuration says, not into the working directory.
        mlflow.create_experiment(EXPERIMENT, artifact_location=_artifact_uri(artifact_location))
    mlflow.set_experiment(EXPERIMENT)
    bundle: ModelBundle = result.bundle
    with mlflow.start_run() as run, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        mlflow.log_params({**params, "data_fingerprint": result.data_fingerprint})
        mlflow.log_metrics(_flat_metrics(result.metrics))
        mlflow.log_metrics(
            {k: float(v) for k, v in result.counts.items() if isinstance(v, int | float)}
        )
        mlflow.log_dict(result.metrics, "metrics.json")
        mlflow.log_dict(result.counts, "counts.json")
        mlflow.log_dict(feature_table().to_dict(orient="records"), "feature_definitions.json")
        mlflow.log_dict(bundle.settings.tiers.model_dump(mode="json"), "tier_rules.json")
        mlflow.log_dict(
            trained_persons_artifact(key, result.trained_persons), TRAINED_PERSONS_ARTIFACT
        )
        y = result.predictions["label"].to_numpy()
        p = result.predictions["probability"].to_numpy()
        model_block = result.metrics["model"]
        for path in _plots(
            folder, y, p, model_block["calibration_curve"], model_block["lift_by_decile"]
        ):
            mlflow.log_artifact(str(path), "plots")
        card = model_card(
            model_name=model_name,
            run_id=run.info.run_id,
            summary=summary,
            counts=result.counts,
            feature_definitions=feature_table(),
            bands=bundle.settings.bands_payload(),
            scorecard=bundle.scorecard.table(),
            data_fingerprint=result.data_fingerprint,
        )
        mlflow.log_text(card, "model_card.md")
        bundle_dir = bundle.save(folder / BUNDLE_ARTIFACT)
        example = input_example(bundle.features)
        signature = infer_signature(example, bundle.model.predict_proba(example))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=_pyfunc_class()(),
            artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
            signature=signature,
            input_example=example,
            registered_model_name=model_name,
            pip_requirements=[f"ipvi=={bundle.settings.package_version}"],
        )
        version = str(info.registered_model_version)
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        tags = {
            "run_id": run.info.run_id,
            "data_fingerprint": result.data_fingerprint,
            "package_version": bundle.settings.package_version,
            "bands": json.dumps(bundle.settings.bands_payload()),
        }
        for key, value in tags.items():
            client.set_model_version_tag(model_name, version, key, value)
        client.set_registered_model_alias(model_name, alias, version)
        mlflow.set_tag("model_version", version)
        return {"run_id": run.info.run_id, "model_version": version, "model_name": model_name}


def registered_version(tracking_uri: str, name: str, alias_or_version: str):
    """The registry's entry (an MLflow ``ModelVersion``) for a version number or an alias.

    Raises
    ------
    IpviError
        When the registry holds no such version or alias.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    _mlflow(tracking_uri)
    try:
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    except MlflowException:  # a store MLflow cannot open (or no longer supports)
        raise IpviError(f"cannot open the MLflow registry at {tracking_uri}") from None
    return _resolve(client, name, alias_or_version)


VERSION_MISMATCH = (
    "model version {version} was trained with ipvi {trained}, this is ipvi {installed}: "
    "retrain, or install the matching package version"
)


def require_package_version(version) -> None:
    """Refuse to score with a registered version (an MLflow ``ModelVersion``) trained by
    another ipvi version: its features would be rebuilt by code other than the code it was
    trained on, and its scores would differ without a word.

    Raises
    ------
    IpviError
        Naming both package versions.
    """
    trained = version.tags.get("package_version")
    if trained != package_version():
        raise IpviError(
            VERSION_MISMATCH.format(
                version=version.version, trained=trained, installed=package_version()
            )
        )


def _resolve(client, name: str, alias_or_version: str):
    from mlflow.exceptions import MlflowException

    try:
        if str(alias_or_version).isdigit():
            return client.get_model_version(name, str(alias_or_version))
        return client.get_model_version_by_alias(name, alias_or_version)
    except MlflowException:
        raise IpviError(
            f"model '{name}' has no version or alias '{alias_or_version}' in the registry"
        ) from None


def version_info(tracking_uri: str, name: str, alias_or_version: str) -> dict:
    """A version's facts: ``version``, ``run_id``, ``aliases``, ``bands`` (name, lower, use),
    ``data_fingerprint``, ``package_version``, ``feature_definitions`` and ``tags``."""
    from mlflow import MlflowClient

    _mlflow(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    mv = _resolve(client, name, alias_or_version)
    bundle, _ = load_bundle(tracking_uri, name, mv.version)
    return {
        "name": name,
        "version": str(mv.version),
        "run_id": mv.run_id,
        "aliases": list(mv.aliases),
        "bands": bundle.settings.bands_payload(),
        "data_fingerprint": mv.tags.get("data_fingerprint"),
        "package_version": bundle.settings.package_version,
        "feature_definitions": list(bundle.settings.feature_definitions),
        "tags": dict(mv.tags),
    }


def frozen_bands(tracking_uri: str, name: str, version: str) -> list[dict] | None:
    """The version's band cut-points and uses as frozen in MLflow, or None when the store
    cannot give them (the audit then reads them off the scores)."""
    from mlflow.exceptions import MlflowException

    try:
        return version_info(tracking_uri, name, version)["bands"]
    except (IpviError, MlflowException, OSError):
        return None


def load_bundle(tracking_uri: str, name: str, alias_or_version: str) -> tuple[ModelBundle, dict]:
    """The bundle of a registered version, and ``{"version", "run_id"}``."""
    from mlflow import MlflowClient

    mlflow = _mlflow(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    mv = _resolve(client, name, alias_or_version)
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{mv.version}", dst_path=tmp
        )
        found = list(Path(local).rglob("bundle.json"))
        if not found:
            raise IpviError(f"model '{name}' version {mv.version} holds no training bundle")
        bundle = ModelBundle.load(found[0].parent)
    return bundle, {"version": str(mv.version), "run_id": mv.run_id}


TRAINED_PERSONS_ARTIFACT = "trained_persons.json"
# The key under which versions before the site key listed unkeyed SHA-256 hashes.
_LEGACY_PERSONS = "persons_sha256"


def trained_persons_artifact(key: SiteKey, person_ids: list[str]) -> dict:
    """The content of ``trained_persons.json``: each person's keyed pseudonym, sorted."""
    return {"persons_hmac": sorted(key.pseudonym(p) for p in person_ids), "key_id": key.key_id}


def purge_trained_persons(
    tracking_uri: str, name: str, key: SiteKey, person_ids: list[str], *, tombstone_id: int
) -> list[str]:
    """Remove persons from ``trained_persons.json`` of every version of ``name`` trained on
    them, and tag those versions as needing retraining (``retrain_after_purge``: the
    tombstones); returns those versions.

    The model itself still holds what it learned from them until the next ``ipvi train``,
    which no longer sees their records.
    """
    from mlflow import MlflowClient

    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri[10:]).exists():
        return []  # no store yet (nothing trained): do not create one
    mlflow = _mlflow(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    forms = {key.pseudonym(p) for p in person_ids} | {legacy_hash(p) for p in person_ids}
    hit = []
    for mv in client.search_model_versions(f"name = '{name}'"):
        if not mv.run_id:
            continue
        try:
            stored = mlflow.artifacts.load_dict(f"runs:/{mv.run_id}/{TRAINED_PERSONS_ARTIFACT}")
        except Exception:  # a run without the artefact (an older layout): nothing to remove
            continue
        lists = {k: v for k, v in stored.items() if k in ("persons_hmac", _LEGACY_PERSONS)}
        if not any(forms & set(values) for values in lists.values()):
            continue
        kept = {k: [h for h in v if h not in forms] for k, v in lists.items()}
        client.log_dict(mv.run_id, {**stored, **kept}, TRAINED_PERSONS_ARTIFACT)
        before = (mv.tags or {}).get("retrain_after_purge", "")
        tombstones = ",".join(filter(None, [before, str(tombstone_id)]))
        client.set_model_version_tag(name, mv.version, "retrain_after_purge", tombstones)
        hit.append(str(mv.version))
    return sorted(hit, key=int)
