"""A points scorecard staff can add up by hand: at most 12 yes/no items, integer points.

Candidate items are thresholds of the model features in their risk-raising direction ("2 or
more prior IPV offences", "age under 25"). An L1-penalised logistic regression picks the
strongest; a plain one refitted on those sets the weights, scaled so the largest item is worth
5 points and rounded. Items rounding to nothing, or pointing the wrong way, are dropped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from ipvi.columns import Columns
from training.features import FEATURE_BY_NAME
from training.models import check_fitted, check_labels
from training.tiers import condition_mask

MAX_ITEMS = 12
MAX_POINTS = 5

# Thresholds tried for each kind of feature (in its risk-raising direction).
_COUNT_THRESHOLDS = (1, 2, 3, 5)
_AGE_THRESHOLDS = (25, 30, 35, 45)
_DAYS_THRESHOLDS = (90, 365, 1095)


def candidate_items(columns: list[str]) -> list[tuple[str, str, float]]:
    """Yes/no items ``(feature, op, value)`` for the given model features."""
    items: list[tuple[str, str, float]] = []
    for column in columns:
        direction = FEATURE_BY_NAME[column].direction
        if column == "age":
            items += [(column, "<", float(v)) for v in _AGE_THRESHOLDS]
        elif column == "days_since_last_ipv":
            items += [(column, "<=", float(v)) for v in _DAYS_THRESHOLDS]
        elif direction > 0:
            items += [(column, ">=", float(v)) for v in _COUNT_THRESHOLDS]
    return items


def _item_matrix(X: Columns | pd.DataFrame, items: list[tuple[str, str, float]]) -> np.ndarray:
    return np.column_stack([condition_mask(X, item) for item in items]).astype(float)


class Scorecard:
    """An integer-points scorecard of at most ``max_items`` yes/no items.

    Parameters
    ----------
    max_items : int
        At most 12.
    C : float
        Inverse L1 strength used to choose items.
    seed : int
        Seed of the item-choosing solver (which shuffles the data).

    Attributes
    ----------
    items_ : list of (feature, op, value)
    points_ : ndarray of int
    """

    def __init__(self, max_items: int = 10, C: float = 0.05, seed: int = 0) -> None:
        self.max_items = max_items
        self.C = C
        self.seed = seed

    def fit(self, X: Columns | pd.DataFrame, y: np.ndarray) -> Scorecard:
        """Choose items and points on ``X`` (named feature columns), ``y``."""
        check_labels(np.asarray(y), "training")
        max_items = min(self.max_items, MAX_ITEMS)
        items = candidate_items(list(X.columns))
        matrix = _item_matrix(X, items)
        keep = matrix.std(axis=0) > 0
        items = [item for item, k in zip(items, keep, strict=True) if k]
        matrix = matrix[:, keep]
        lasso = LogisticRegression(
            l1_ratio=1.0, solver="liblinear", C=self.C, max_iter=500, random_state=self.seed
        )
        lasso.fit(matrix, y)
        order = np.argsort(-lasso.coef_[0])
        chosen = [i for i in order if lasso.coef_[0][i] > 0][:max_items]
        if not chosen:
            chosen = [int(order[0])]
        refit = LogisticRegression(max_iter=500).fit(matrix[:, chosen], y)
        weights = refit.coef_[0]
        top = max(weights.max(), 1e-9)
        points = np.rint(MAX_POINTS * weights / top).astype(int)
        use = points > 0
        self.items_ = [items[chosen[i]] for i in np.flatnonzero(use)]
        self.points_ = points[use]
        return self

    def score(self, X: Columns | pd.DataFrame) -> np.ndarray:
        """Total points of each row."""
        check_fitted(self, "points_")
        return (_item_matrix(X, self.items_) @ self.points_).astype(int)

    def table(self) -> pd.DataFrame:
        """The scorecard as staff read it: item wording and points."""
        check_fitted(self, "points_")
        rows = [
            {
                "item": f"{FEATURE_BY_NAME[feature].wording}: {op} {value:g}",
                "feature": feature,
                "op": op,
                "value": value,
                "points": int(points),
            }
            for (feature, op, value), points in zip(self.items_, self.points_, strict=True)
        ]
        return pd.DataFrame(rows)
