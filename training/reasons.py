"""Reason codes: the features that pushed each score up most, in plain language, with sources.

The trees' SHAP values (path-dependent TreeSHAP, as LightGBM's ``pred_contrib`` computes them,
read from :mod:`training.compiled_trees`) split each raw score into per-feature contributions.
The top ``k`` (3-5) become sentences from the feature definitions ("3 prior IPV offences in
the last 12 months"), each citing the source record ids the feature rests on.
"""

from __future__ import annotations

import numpy as np

from training.features import FEATURE_BY_NAME, AsOfFeatures
from training.models import RiskModel


def reason_codes(
    model: RiskModel, features: AsOfFeatures, *, k: int = 4, matrix: np.ndarray | None = None
) -> list[list[dict]]:
    """The top ``k`` contributions of each row of ``features.X`` as reason dicts.

    Each reason is ``{"feature", "text", "contribution", "record_ids"}``, largest first.
    ``matrix`` is ``model.feature_matrix(features.X)`` when the caller has it already.
    """
    matrix = model.feature_matrix(features.X) if matrix is None else matrix
    values = model.contribution_matrix(matrix)
    names = np.array(model.feature_names_in_, dtype=object)
    top = np.argsort(-values, axis=1, kind="stable")[:, :k]
    n, width = top.shape
    rows = np.repeat(np.arange(n), width)
    columns = top.ravel()
    feature = names[columns]
    contribution = np.round(values[rows, columns], 6)
    value = matrix[rows, columns]
    records, _ = features.cite(rows, feature, np.arange(len(rows)), len(rows))
    keys = list(zip(feature.tolist(), value.tolist(), strict=True))
    # Each distinct (feature, value) is worded once: a batch repeats a few hundred of them.
    texts = {key: FEATURE_BY_NAME[key[0]].reason_text(key[1]) for key in set(keys)}
    reasons = [
        {"feature": name, "text": texts[name, number], "contribution": amount, "record_ids": ids}
        for (name, number), amount, ids in zip(keys, contribution.tolist(), records, strict=True)
    ]
    # Each row's reasons are ``width`` consecutive pairs.
    return [reasons[start : start + width] for start in range(0, len(reasons), width)]
