"""Mitigation analysis, for the report only: nothing here is ever applied to a decision.

Two views: how each group's false positive and false negative rates move as a single
threshold moves, and what fairlearn's ``ThresholdOptimizer`` would change with a separate
threshold per group. Group-specific thresholds need the protected attribute at decision time,
which this project forbids the model to see, and they need legal review; the report says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from fairlearn.postprocessing import ThresholdOptimizer
from sklearn.base import BaseEstimator

from fairness.metrics import (
    GroupMetrics,
    false_negative_rate,
    false_positive_rate,
    selection_rate,
    weighted_rows,
)

STATEMENT = (
    "This section is analysis only; nothing in it is applied. A separate cut-point for each "
    "group would need the protected attribute (race, ethnicity or sex) at the moment of "
    "decision, which this system never gives the model, and it needs legal review before any "
    "use: treating people differently by a protected attribute can itself be unlawful."
)
_RATES = {"fpr": false_positive_rate, "fnr": false_negative_rate, "selection": selection_rate}
# The error rate each use makes matter (a generic decision of unknown use: false positives).
CONSTRAINT_BY_USE = {
    "punitive": "false_positive_rate_parity",
    "outreach": "false_negative_rate_parity",
    "both": "false_positive_rate_parity",
}
CONSTRAINT_WORDS = {
    "false_positive_rate_parity": "equal false positive rates",
    "false_negative_rate_parity": "equal false negative rates",
}


class ScorePassthrough(BaseEstimator):
    """A fitted "estimator" whose prediction is the score it is given (first column).

    ThresholdOptimizer post-processes an estimator; the audited scores already exist, so this
    hands them through unchanged.
    """

    def fit(self, X, y=None) -> ScorePassthrough:
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def predict(self, X) -> np.ndarray:
        return np.asarray(X, dtype=float)[:, 0]


def threshold_curves(
    y_true, score, *, sensitive_features: pd.Series, thresholds: np.ndarray
) -> dict[str, list[dict[str, float]]]:
    """False positive, false negative and selection rates per group at each threshold.

    The rows are stacked once per threshold (collapsed into weighted rows) and the threshold
    is a control feature, so one :class:`GroupMetrics` computes every point of every curve.
    """
    y = np.asarray(y_true)
    s = np.asarray(score, dtype=float)
    k = len(thresholds)
    cut = np.repeat(np.asarray(thresholds, dtype=float), s.size)
    name = sensitive_features.name
    rows = weighted_rows(
        pd.DataFrame(
            {
                name: np.tile(sensitive_features.to_numpy(), k),
                "threshold": cut,
                "label": np.tile(y, k),
                "decision": (np.tile(s, k) >= cut).astype(int),
            }
        ),
        [name, "threshold", "label", "decision"],
    )
    table = GroupMetrics(
        _RATES,
        rows["label"].to_numpy(),
        rows["decision"].to_numpy(),
        sensitive_features=rows[name],
        control_features=rows["threshold"],
        sample_weight=rows["weight"],
    ).by_group
    curves: dict[str, list[dict[str, float]]] = {}
    for (threshold, group), row in table.iterrows():
        curves.setdefault(str(group), []).append(
            {"threshold": float(threshold), **{key: float(row[key]) for key in _RATES}}
        )
    return curves


def threshold_optimizer_effect(
    y_true, score, decision, *, sensitive_features: pd.Series, use: str, seed: int
) -> dict[str, Any]:
    """Rates per group now, and under fairlearn's ThresholdOptimizer for the decision's use."""
    constraint = CONSTRAINT_BY_USE.get(use, "false_positive_rate_parity")
    y = np.asarray(y_true)
    features = pd.DataFrame({"score": np.asarray(score, dtype=float)})
    estimator = ScorePassthrough().fit(features)
    optimizer = ThresholdOptimizer(
        estimator=estimator,
        constraints=constraint,
        objective="balanced_accuracy_score",
        prefit=True,
        predict_method="predict",
    )
    optimizer.fit(features, y, sensitive_features=sensitive_features.to_numpy())
    after = optimizer.predict(
        features, sensitive_features=sensitive_features.to_numpy(), random_state=seed
    )
    rows = weighted_rows(
        pd.DataFrame(
            {
                "group": sensitive_features.to_numpy(),
                "label": y,
                "now": np.asarray(decision, dtype=int),
                "after": np.asarray(after, dtype=int),
            }
        ),
        ["group", "label", "now", "after"],
    )
    now, then = (
        GroupMetrics(
            _RATES,
            rows["label"].to_numpy(),
            rows[column].to_numpy(),
            sensitive_features=rows["group"],
            sample_weight=rows["weight"],
        )
        for column in ("now", "after")
    )
    groups = {
        str(group): {
            "fpr_now": float(now.by_group.loc[group, "fpr"]),
            "fpr_after": float(then.by_group.loc[group, "fpr"]),
            "fnr_now": float(now.by_group.loc[group, "fnr"]),
            "fnr_after": float(then.by_group.loc[group, "fnr"]),
            "selection_now": float(now.by_group.loc[group, "selection"]),
            "selection_after": float(then.by_group.loc[group, "selection"]),
        }
        for group in now.by_group.index
    }
    return {
        "constraint": constraint,
        "constraint_words": CONSTRAINT_WORDS[constraint],
        "objective": "balanced accuracy",
        "attribute": str(sensitive_features.name),
        "groups": groups,
    }


def analyse(
    y_true,
    score,
    decision,
    *,
    attributes: pd.DataFrame,
    use: str,
    seed: int,
    max_rows: int = 50_000,
) -> dict[str, Any]:
    """The report's mitigation section for one scored decision.

    Parameters
    ----------
    y_true, score, decision : array-like
        Labels, scores and the decision now in use.
    attributes : DataFrame
        One column per protected attribute (no intersections: the sweep is for reading).
    use : str
        The decision's use, which picks ThresholdOptimizer's constraint.
    seed : int
        Seeds the subsample and ThresholdOptimizer's randomised predictions.
    max_rows : int
        The analysis runs on at most this many rows (a seeded subsample).
    """
    s = np.asarray(score, dtype=float)
    y = np.asarray(y_true)
    d = np.asarray(decision)
    rows = np.arange(s.size)
    if rows.size > max_rows:  # a seeded subsample: curves and the optimiser are for reading
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_rows, replace=False))
    if s.min() >= 0 and s.max() <= 1:
        thresholds = np.round(np.linspace(0.05, 0.95, 19), 2)
    else:
        thresholds = np.unique(np.quantile(s, np.linspace(0.05, 0.95, 19)))
    sample = attributes.iloc[rows].reset_index(drop=True)
    curves = {
        name: threshold_curves(
            y[rows], s[rows], sensitive_features=sample[name], thresholds=thresholds
        )
        for name in sample.columns
    }
    out: dict[str, Any] = {"statement": STATEMENT, "curves": curves, "rows_used": int(rows.size)}
    if len(sample.columns):
        try:
            out["threshold_optimizer"] = threshold_optimizer_effect(
                y[rows],
                s[rows],
                d[rows],
                sensitive_features=sample[sample.columns[0]],
                use=use,
                seed=seed,
            )
        except ValueError as error:  # e.g. a group with one class: say so, do not fail
            out["threshold_optimizer_error"] = str(error).splitlines()[0]
    return out
