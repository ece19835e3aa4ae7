"""The supervised option: logistic regression on comparison vectors, trained on clerical labels.

When reviewers have decided enough pairs, their decisions ("match" / "non-match") train a
logistic regression on the one-hot comparison levels plus the Fellegi-Sunter match weight (so
the unsupervised evidence is a feature, not thrown away). It then rescores every candidate pair.
scikit-learn is imported only here, so ``ipvi dedupe`` never loads it.
"""

from __future__ import annotations

import numpy as np

from ipvi.errors import IpviError

NOT_FITTED = "the supervised scorer is not fitted: call fit() first"


class SupervisedScorer:
    """Logistic regression over one-hot levels and the FS weight.

    Parameters
    ----------
    n_levels : list of int
        Number of levels of each comparison (columns of the level matrix).
    C : float
        Inverse regularisation strength.
    min_labels_per_class : int
        Fewer labelled matches or non-matches than this is an error: the model would overfit.

    Attributes
    ----------
    model_ : LogisticRegression
        The fitted model.
    n_labels_ : dict
        Labelled pairs used per class.

    Examples
    --------
    >>> levels = np.array([[1], [1], [2], [2]] * 10, dtype=np.int8)
    >>> scorer = SupervisedScorer(n_levels=[3], min_labels_per_class=5)
    >>> scorer = scorer.fit(levels, np.zeros(40), np.array([1, 1, 0, 0] * 10))
    >>> bool(scorer.predict_proba(np.array([[1]], dtype=np.int8), np.zeros(1))[0] > 0.5)
    True
    """

    PARAMETERS = {"C": (0.0, None), "min_labels_per_class": (1, None)}

    def __init__(self, n_levels: list[int], C: float = 1.0, min_labels_per_class: int = 20):
        self.n_levels = n_levels
        self.C = C
        self.min_labels_per_class = min_labels_per_class

    def _features(self, levels: np.ndarray, weight: np.ndarray) -> np.ndarray:
        columns = [
            (levels[:, k][:, None] == np.arange(n)[None, :]).astype(np.float32)
            for k, n in enumerate(self.n_levels)
        ]
        scaled = np.clip(np.asarray(weight, dtype=np.float32), -60, 60)[:, None] / 10.0
        return np.hstack([*columns, scaled])

    def fit(self, levels: np.ndarray, weight: np.ndarray, y: np.ndarray) -> SupervisedScorer:
        """Fit on labelled pairs (``y`` 1 = match, 0 = non-match)."""
        from sklearn.linear_model import LogisticRegression

        if self.C <= 0:
            raise IpviError("supervised scorer: C must be positive")
        y = np.asarray(y, dtype=int)
        counts = {"match": int((y == 1).sum()), "non-match": int((y == 0).sum())}
        if min(counts.values()) < self.min_labels_per_class:
            raise IpviError(
                f"supervised scorer: {counts['match']} match and {counts['non-match']} "
                f"non-match labels; at least {self.min_labels_per_class} of each are needed"
            )
        self.model_ = LogisticRegression(C=self.C, max_iter=1000).fit(
            self._features(levels, weight), y
        )
        self.n_labels_ = counts
        return self

    def predict_proba(self, levels: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """Match probability of each pair."""
        if not hasattr(self, "model_"):
            raise IpviError(NOT_FITTED)
        return self.model_.predict_proba(self._features(levels, weight))[:, 1]
