"""Group metrics: one object, built on fairlearn's ``MetricFrame``, does all the grouping.

Every rate the audit reports is a plain ``fn(y_true, y_pred, **sample_params)`` evaluated by
:class:`GroupMetrics`; nothing else in ``fairness/`` groups rows by hand. The bootstrap
(:mod:`fairness.bootstrap`) re-derives the same rates from confusion counts, so each rate is
also declared here as a ratio of two counts (:data:`RATE_COUNTS`), and the tests check that the
two routes agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame
from scipy.stats import rankdata

# Every count statistic is a whole-number combination of four per-row terms of the label y and
# the decision d (0/1): 1, y, d and y * d. Resampled totals of the terms give every statistic's
# totals exactly (sums of whole numbers), so the bootstrap resamples four terms, not nine.
COUNT_COEFFICIENTS: dict[str, tuple[int, int, int, int]] = {
    "n": (1, 0, 0, 0),
    "pos": (0, 1, 0, 0),
    "neg": (1, -1, 0, 0),
    "pp": (0, 0, 1, 0),
    "pn": (1, 0, -1, 0),
    "tp": (0, 0, 0, 1),
    "fp": (0, 0, 1, -1),
    "fn": (0, 1, 0, -1),
    "tn": (1, -1, -1, 1),
}


def count_terms(y: np.ndarray, d: np.ndarray) -> np.ndarray:
    """The four terms per row, in :data:`COUNT_COEFFICIENTS`' order (1, y, d, y * d): shape
    (n_rows, 4)."""
    return np.column_stack([np.ones_like(y), y, d, y * d])


def _count_stat(y, d, *, coefficients: tuple[int, int, int, int]) -> np.ndarray:
    return count_terms(np.asarray(y), np.asarray(d)) @ np.asarray(coefficients)


# Count statistics per row: name -> its value from the label y and decision d (0/1).
COUNT_STATS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    name: partial(_count_stat, coefficients=coefficients)
    for name, coefficients in COUNT_COEFFICIENTS.items()
}

# Each reported rate as numerator / denominator of count statistics.
RATE_COUNTS: dict[str, tuple[str, str]] = {
    "base_rate": ("pos", "n"),
    "selection_rate": ("pp", "n"),
    "fpr": ("fp", "neg"),
    "fnr": ("fn", "pos"),
    "ppv": ("tp", "pp"),
    "npv": ("tn", "pn"),
}

RATE_NAMES: dict[str, str] = {
    "base_rate": "base rate",
    "selection_rate": "selection rate",
    "fpr": "false positive rate",
    "fnr": "false negative rate",
    "ppv": "positive predictive value",
    "npv": "negative predictive value",
    "auc": "AUC",
}


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else float("nan")


def _weights(y_true, sample_weight) -> np.ndarray:
    if sample_weight is None:
        return np.ones(len(y_true))
    return np.asarray(sample_weight, dtype=float)


def _count_rate(y_true, y_pred, *, numerator: str, denominator: str, sample_weight=None) -> float:
    y = np.asarray(y_true, dtype=float)
    d = np.asarray(y_pred, dtype=float)
    w = _weights(y, sample_weight)
    return _ratio(
        (COUNT_STATS[numerator](y, d) * w).sum(), (COUNT_STATS[denominator](y, d) * w).sum()
    )


def count(y_true, y_pred, *, sample_weight=None) -> int:
    """Number of rows (weighted: the rows a weighted row stands for)."""
    return int(round(_weights(y_true, sample_weight).sum()))


def positives(y_true, y_pred, *, sample_weight=None) -> int:
    """Number of rows whose label is positive."""
    return int(round((np.asarray(y_true, dtype=float) * _weights(y_true, sample_weight)).sum()))


def negatives(y_true, y_pred, *, sample_weight=None) -> int:
    """Number of rows whose label is negative."""
    y = np.asarray(y_true, dtype=float)
    return int(round(((1 - y) * _weights(y, sample_weight)).sum()))


def auc(y_true, y_score) -> float:
    """ROC AUC of a score (passed as ``y_pred``) against the label; NaN with one class.

    The Mann-Whitney form with mid-ranks for ties: equal to ``sklearn.metrics.roc_auc_score``
    without its per-call validation, which dominates when called for every group.
    """
    y = np.asarray(y_true) == 1
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(y_score, dtype=float))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def mean_predicted(y_true, y_pred, *, sample_weight=None) -> float:
    """Mean predicted probability (``y_pred`` holds probabilities): calibration's other side."""
    values = np.asarray(y_pred, dtype=float)
    if not values.size:
        return float("nan")
    return float(np.average(values, weights=_weights(values, sample_weight)))


def weighted_rows(frame: pd.DataFrame, keys: list[str], mean_of: str | None = None) -> pd.DataFrame:
    """Collapse identical rows into one row with a ``weight`` (and the mean of ``mean_of``).

    Every count-based metric here is a weighted sum, so the metrics of the collapsed rows equal
    those of the original rows exactly, and :class:`GroupMetrics` (fairlearn converts each
    group's rows element by element) then runs on a few hundred rows instead of 100,000.
    """
    grouped = frame.groupby(keys, sort=False, observed=True, dropna=False)
    out = grouped.size().rename("weight")
    if mean_of is not None:
        out = pd.concat([out, grouped[mean_of].mean()], axis=1)
    return out.reset_index()


# The plain rate functions, one per entry of RATE_COUNTS.
RATE_FUNCTIONS: dict[str, Callable] = {
    name: partial(_count_rate, numerator=num, denominator=den)
    for name, (num, den) in RATE_COUNTS.items()
}
base_rate = RATE_FUNCTIONS["base_rate"]
selection_rate = RATE_FUNCTIONS["selection_rate"]
false_positive_rate = RATE_FUNCTIONS["fpr"]
false_negative_rate = RATE_FUNCTIONS["fnr"]

# What does not depend on the decision: group sizes and the base rate.
GROUP_METRICS: dict[str, Callable] = {
    "n": count,
    "positives": positives,
    "negatives": negatives,
    "base_rate": base_rate,
}
# The rates of one decision.
DECISION_RATES: dict[str, Callable] = {
    name: function for name, function in RATE_FUNCTIONS.items() if name != "base_rate"
}
# Everything about one decision: sizes, then every rate.
DECISION_METRICS: dict[str, Callable] = {**GROUP_METRICS, **DECISION_RATES}


class GroupMetrics:
    """Metrics by group over one or more sensitive features (a thin layer over ``MetricFrame``).

    Parameters
    ----------
    metrics : dict of str to callable
        Plain ``fn(y_true, y_pred, **sample_params)`` functions.
    y_true, y_pred : array-like
        Labels and decisions (0/1).
    sensitive_features : array-like, Series or DataFrame
        The grouping; several columns group by their intersection.
    control_features : array-like, optional
        Strata (for example the risk band) within which groups are compared.
    sample_params : dict, optional
        Per-metric extra arrays, e.g. ``{"fpr": {"sample_weight": w}}``.
    sample_weight : array-like, optional
        A weight per row for every metric (rows collapsed by :func:`weighted_rows`).

    Attributes
    ----------
    frame_ : fairlearn.metrics.MetricFrame
        The underlying frame.

    Examples
    --------
    >>> gm = GroupMetrics(
    ...     metrics={"fpr": false_positive_rate},
    ...     y_true=[0, 0, 1, 0, 0, 1],
    ...     y_pred=[1, 0, 1, 1, 1, 0],
    ...     sensitive_features=pd.Series(["a", "a", "a", "b", "b", "b"], name="g"),
    ... )
    >>> gm.by_group["fpr"].tolist()
    [0.5, 1.0]
    >>> gm.ratio(reference="b")["fpr"].tolist()
    [0.5, 1.0]
    """

    def __init__(
        self,
        metrics: Mapping[str, Callable],
        y_true,
        y_pred,
        *,
        sensitive_features,
        control_features=None,
        sample_params: Mapping[str, Mapping[str, object]] | None = None,
        sample_weight=None,
    ) -> None:
        self.metrics = metrics
        self.sample_weight = sample_weight
        params = {k: dict(v) for k, v in (sample_params or {}).items()}
        if sample_weight is not None:
            weights = np.asarray(sample_weight, dtype=float)
            for name in metrics:
                params.setdefault(name, {})["sample_weight"] = weights
        self.frame_ = MetricFrame(
            metrics=dict(metrics),
            y_true=np.asarray(y_true),
            y_pred=np.asarray(y_pred),
            sensitive_features=sensitive_features,
            control_features=control_features,
            sample_params=params or None,
        )

    @property
    def overall(self) -> pd.Series | pd.DataFrame:
        """Each metric on all rows (per stratum when there are control features)."""
        return self.frame_.overall

    @property
    def by_group(self) -> pd.DataFrame:
        """Each metric per group (rows) and metric (columns)."""
        return self.frame_.by_group

    def _reference_row(self, reference: str) -> pd.Series | pd.DataFrame:
        table = self.by_group
        levels = table.index.get_level_values(-1)
        if reference not in set(levels):
            raise KeyError(f"reference group {reference!r} is not among the groups")
        if table.index.nlevels == 1:
            return table.loc[reference]
        return table.xs(reference, level=-1)

    def difference(self, *, reference: str | None = None) -> pd.Series | pd.DataFrame:
        """Group minus reference group per metric; without a reference, fairlearn's max - min."""
        if reference is None:
            return self.frame_.difference()
        ref = self._reference_row(reference)
        if isinstance(ref, pd.DataFrame):  # stratified: align each stratum with its reference
            return self.by_group - ref.reindex(self.by_group.index.droplevel(-1)).to_numpy()
        return self.by_group - ref

    def ratio(self, *, reference: str | None = None) -> pd.Series | pd.DataFrame:
        """Group over reference group per metric; without a reference, fairlearn's min / max."""
        if reference is None:
            return self.frame_.ratio()
        ref = self._reference_row(reference)
        if isinstance(ref, pd.DataFrame):
            return self.by_group / ref.reindex(self.by_group.index.droplevel(-1)).to_numpy()
        return self.by_group / ref
