"""Performance on matured outcomes, by period, by group and by band, next to training's figures.

Every table is one :class:`fairness.metrics.GroupMetrics` (the audit's grouping) over the
matured scores, with AUC intervals from one :class:`fairness.bootstrap.PersonBootstrap`
(persons resampled, so repeated scores of one person are not independent evidence):

- AUC: does the model still rank those who re-offend above those who do not?
- ECE and observed vs predicted: does a 30 % still mean about 30 %?
- reliability by band: the observed rate of a recorded re-offence in each band.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd

from fairness.bootstrap import PersonBootstrap
from fairness.metrics import GroupMetrics, auc, base_rate, count, mean_predicted, positives
from training.evaluate import ece, ece_batch

# The figures of one group, in the order :func:`_figures` returns them.
FIGURES = ("n", "positives", "observed", "predicted", "auc", "ece")


def _figures(y_true, y_pred, *, bins: int) -> np.ndarray:
    """Every figure of one group as one metric: fairlearn converts a group's rows element by
    element once per metric, which dominated the monitor at 100,000 persons."""
    y = np.asarray(y_true, dtype=float)
    return np.array(
        [
            count(y_true, y_pred),
            positives(y_true, y_pred),
            base_rate(y_true, y_pred),
            mean_predicted(y_true, y_pred),
            auc(y_true, y_pred),
            ece(y, np.asarray(y_pred, dtype=float), bins=bins) if y.size else float("nan"),
        ],
        dtype=float,
    )


def _value(number) -> float | None:
    number = float(number)
    return None if np.isnan(number) else number


def group_table(
    frame: pd.DataFrame,
    column: str,
    boot: PersonBootstrap,
    *,
    bins: int,
    min_outcomes: int,
) -> dict[str, dict]:
    """Size, positives, observed and predicted rate, AUC and ECE (each with its person-
    bootstrap interval) per value of ``column``; ``judged`` is False for groups under
    ``min_outcomes`` rows."""
    y = frame["label"].to_numpy(dtype=int)
    p = frame["probability"].to_numpy(dtype=float)
    groups = frame[column].astype(str).rename(column)
    table = GroupMetrics(
        {"figures": partial(_figures, bins=bins)}, y, p, sensitive_features=groups
    ).by_group["figures"]
    codes, labels = pd.factorize(groups, sort=True)
    intervals = boot.interval(boot.auc(y, p, codes, len(labels)))
    at = {label: k for k, label in enumerate(labels)}
    out = {}
    for group, values in table.items():
        row = dict(zip(FIGURES, values, strict=True))
        k = at[group]
        rows = codes == k
        # Each resample's weight of each of the group's rows: its person's draw count.
        weights = boot.counts_[:, boot.row_person_[rows]].astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):  # a resample without the group
            resampled = ece_batch(y[rows], p[rows], weights, bins=bins)
        ece_low, ece_high = boot.interval(resampled)
        out[str(group)] = {
            "n": int(row["n"]),
            "positives": int(row["positives"]),
            "observed": _value(row["observed"]),
            "predicted": _value(row["predicted"]),
            "auc": _value(row["auc"]),
            "auc_ci": [_value(intervals[0, k]), _value(intervals[1, k])],
            "ece": _value(row["ece"]),
            "ece_ci": [_value(ece_low), _value(ece_high)],
            "judged": bool(row["n"] >= min_outcomes),
        }
    return out


def bootstrap(frame: pd.DataFrame, *, n_resamples: int, seed: int) -> PersonBootstrap:
    """The one person bootstrap every table of a report shares."""
    return PersonBootstrap(n_resamples, seed=seed).fit(frame["person_id"].to_numpy())
