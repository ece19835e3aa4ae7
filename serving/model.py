"""The model version the service serves, loaded from the MLflow registry in one place.

:func:`served_version` is the quick look (no download) that lets a server refuse to start at
once; :func:`load_scorer` loads that version for scoring, with the fairness audit that cleared
it. Both refuse, with a message saying what to do, a version the registry does not hold or one
trained with another package version.
"""

from __future__ import annotations

from ipvi.errors import IpviError
from training.registry import registered_version, require_package_version
from training.scoring import RiskScorer

NO_CHAMPION = (
    "no model version '{ref}' of '{name}' in the MLflow registry at {uri}: train one with "
    "`ipvi train`, audit it with `ipvi audit` and promote it to champion "
    "(or serve a given version with `ipvi serve --model-version V`)"
)


def served_version(tracking_uri: str, model_name: str, reference: str):
    """The registry entry (MLflow ``ModelVersion``) that ``reference`` (alias or number) names.

    Raises
    ------
    IpviError
        Saying how to train and promote a champion, or which package versions disagree.
    """
    try:
        version = registered_version(tracking_uri, model_name, reference)
    except IpviError:
        raise IpviError(
            NO_CHAMPION.format(ref=reference, name=model_name, uri=tracking_uri)
        ) from None
    require_package_version(version)
    return version


def load_scorer(tracking_uri: str, model_name: str, reference: str) -> tuple[RiskScorer, dict]:
    """The served model version, ready to score (see :func:`served_version` for refusals).

    Returns
    -------
    (RiskScorer, dict)
        The scorer and the fairness audit that cleared the version: ``audit_id`` and
        ``audit_status`` (``forced`` when it was promoted over the gate), from the version's
        registry tags.
    """
    version = served_version(tracking_uri, model_name, reference)
    scorer = RiskScorer.from_registry(tracking_uri, model_name, str(version.version))
    tags = version.tags
    forced = tags.get("promotion_forced") == "true"
    audit = {
        "audit_id": tags.get("audit_id") or None,
        "audit_status": "forced" if forced else (tags.get("audit_status") or None),
    }
    return scorer, audit
