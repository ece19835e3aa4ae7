"""Reason codes: the features that pushed each score up most, in plain language, with sources.

LightGBM's ``pred_contrib`` splits each raw score into per-feature contributions (SHAP values
of the trees). The top ``k`` (3-5) become sentences from the feature definitions ("3 prior IPV
offences in the last 12 months"), each citing the source record ids the feature rests on.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.features import FEATURE_BY_NAME, AsOfFeatures
from training.models import RiskModel


def reason_codes(model: RiskModel, features: AsOfFeatures, *, k: int = 4) -> list[list[dict]]:
    """The top ``k`` contributions of each row of ``features.X`` as reason dicts.

    Each reason is ``{"feature", "text", "contribution", "record_ids"}``, largest first.
    """
    contrib = model.contributions(features.X)
    names = np.array(contrib.columns)
    values = contrib.to_numpy()
    top = np.argsort(-values, axis=1, kind="stable")[:, :k]
    n, width = top.shape
    rows = np.repeat(np.arange(n), width)
    columns = top.ravel()
    picked = pd.DataFrame(
        {
            "row": rows,
            "feature": names[columns],
            "contribution": np.round(values[rows, columns], 6),
            "value": features.X[list(names)].to_numpy(dtype=float)[rows, columns],
            "rank": np.tile(np.arange(width), n),
        }
    )
    cited = features.cite(picked[["row", "feature"]])[["row", "feature", "record_ids"]]
    picked = picked.merge(cited, on=["row", "feature"], how="left").sort_values(["row", "rank"])
    text = np.empty(len(picked), dtype=object)
    for feature, where in picked.groupby("feature", sort=False).indices.items():
        template = FEATURE_BY_NAME[feature].reason
        text[where] = [template.format(value=v) for v in picked["value"].to_numpy()[where]]
    picked["text"] = text
    out: list[list[dict]] = [[] for _ in range(n)]
    for row, feature, phrase, contribution, records in zip(
        picked["row"],
        picked["feature"],
        picked["text"],
        picked["contribution"],
        picked["record_ids"],
        strict=True,
    ):
        out[row].append(
            {
                "feature": feature,
                "text": phrase,
                "contribution": float(contribution),
                "record_ids": records if isinstance(records, list) else [],
            }
        )
    return out
