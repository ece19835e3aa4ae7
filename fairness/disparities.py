"""Disparities against a reference group, and the rule that decides when one is flagged.

A disparity is flagged only when the ratio to the reference lies outside the tolerance band
(default 0.8-1.25, the "four-fifths" band Aequitas uses) *and* the absolute difference is at
least ``min_difference`` (default 0.05): a ratio alone makes 2 % against 1 % look as alarming as
40 % against 20 %. With ``decide_by="interval"`` both conditions must hold over the whole
bootstrap interval, so a gap that chance could explain is reported but not flagged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fairness.metrics import GroupMetrics, false_negative_rate, false_positive_rate, selection_rate


def fpr_gap(y_true, y_pred, *, sensitive_features, reference: str | None = None) -> pd.Series:
    """False positive rate of each group minus the reference's (max - min without one)."""
    metrics = GroupMetrics(
        {"fpr": false_positive_rate}, y_true, y_pred, sensitive_features=sensitive_features
    )
    return metrics.difference(reference=reference)


def fpr_ratio(y_true, y_pred, *, sensitive_features, reference: str | None = None) -> pd.Series:
    """False positive rate of each group over the reference's (min / max without one)."""
    metrics = GroupMetrics(
        {"fpr": false_positive_rate}, y_true, y_pred, sensitive_features=sensitive_features
    )
    return metrics.ratio(reference=reference)


def fnr_ratio(y_true, y_pred, *, sensitive_features, reference: str | None = None) -> pd.Series:
    """False negative rate of each group over the reference's (min / max without one)."""
    metrics = GroupMetrics(
        {"fnr": false_negative_rate}, y_true, y_pred, sensitive_features=sensitive_features
    )
    return metrics.ratio(reference=reference)


def selection_ratio(
    y_true, y_pred, *, sensitive_features, reference: str | None = None
) -> pd.Series:
    """Selection rate of each group over the reference's: Aequitas's "disparate impact"."""
    metrics = GroupMetrics(
        {"selection_rate": selection_rate}, y_true, y_pred, sensitive_features=sensitive_features
    )
    return metrics.ratio(reference=reference)


@dataclass(frozen=True)
class DisparityRule:
    """When a ratio and difference to the reference count as a disparity.

    Parameters
    ----------
    low, high : float
        The tolerance band of the ratio.
    min_difference : float
        The smallest absolute difference that matters.
    decide_by : {"interval", "point"}
        Whether the bootstrap interval or the point estimate must fall outside.
    """

    low: float = 0.8
    high: float = 1.25
    min_difference: float = 0.05
    decide_by: str = "interval"

    def flagged(
        self,
        ratio: float,
        difference: float,
        ratio_ci: Sequence[float] | None = None,
        difference_ci: Sequence[float] | None = None,
    ) -> bool:
        """Whether this comparison is a disparity under the rule.

        Examples
        --------
        >>> rule = DisparityRule(decide_by="point")
        >>> rule.flagged(0.5, -0.2), rule.flagged(0.5, -0.01), rule.flagged(1.1, 0.2)
        (True, False, False)
        >>> DisparityRule().flagged(0.5, -0.2, ratio_ci=(0.3, 0.9), difference_ci=(-0.3, -0.1))
        False
        """
        if self.decide_by == "point":
            if not (np.isfinite(ratio) and np.isfinite(difference)):
                return False
            outside = ratio < self.low or ratio > self.high
            return bool(outside and abs(difference) >= self.min_difference)
        if ratio_ci is None or difference_ci is None:
            return False
        r_lo, r_hi = ratio_ci
        d_lo, d_hi = difference_ci
        if not all(np.isfinite(v) for v in (r_lo, r_hi, d_lo, d_hi)):
            return False
        ratio_out = r_hi < self.low or r_lo > self.high
        diff_out = d_lo >= self.min_difference or d_hi <= -self.min_difference
        return bool(ratio_out and diff_out)


def outside_tolerance(
    value: float, ci: Sequence[float] | None, *, tolerance: float, decide_by: str
) -> bool:
    """Whether a gap (e.g. observed - predicted) lies beyond +-``tolerance``.

    Examples
    --------
    >>> outside_tolerance(0.08, (0.06, 0.1), tolerance=0.05, decide_by="interval")
    True
    >>> outside_tolerance(0.08, (0.01, 0.15), tolerance=0.05, decide_by="interval")
    False
    """
    if decide_by == "point":
        return bool(np.isfinite(value) and abs(value) > tolerance)
    if ci is None or not all(np.isfinite(v) for v in ci):
        return False
    return bool(ci[0] > tolerance or ci[1] < -tolerance)
