"""Evaluation: discrimination, calibration, lift and top-k, with person-bootstrap intervals.

People recur across index offences, so intervals come from a bootstrap that resamples persons
(all of a person's index offences together). A replicate is a vector of per-row weights (how
many times each row's person was drawn), which every metric here accepts. :func:`metric_block`
evaluates all metrics of a score on matrices of replicates at once, from two cumulative sums
per replicate down the score order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

TOP_FRACTIONS: tuple[float, ...] = (0.05, 0.10, 0.20)


class Ranked:
    """A score sorted once, so each bootstrap replicate costs two cumulative sums.

    Rows are ordered by score (descending) and grouped into runs of tied scores. For a matrix
    of weights (one replicate per row), :meth:`prefix` gives the cumulative weight and weighted
    outcome down that order; weighted AUC, average precision and top-k figures are then read
    off those sums at the tie-group ends or at a cut-off. The ``*_batch`` methods return one
    value per replicate (NaN where it is undefined).
    """

    def __init__(self, y: np.ndarray, score: np.ndarray) -> None:
        self.y = np.asarray(y, dtype=float)
        self.order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
        ordered = np.asarray(score, dtype=float)[self.order]
        self.y_ordered = self.y[self.order]
        # Last row of each run of tied scores.
        self.ends = np.flatnonzero(np.r_[ordered[1:] != ordered[:-1], True])[: len(ordered)]

    def prefix(self, W: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Cumulative weight and weighted outcome down the score order, per replicate.

        Bootstrap weights are whole counts, so differences of these sums are exact.
        """
        W = np.ones((1, len(self.y))) if W is None else np.atleast_2d(np.asarray(W, float))
        ordered = W[:, self.order]
        return np.cumsum(ordered, axis=1), np.cumsum(ordered * self.y_ordered, axis=1)

    def _groups(self, prefix: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Weighted positives and negatives per tie group (from the top score down)."""
        cw, cwy = prefix
        everyone = np.diff(cw[:, self.ends], axis=1, prepend=0.0)
        pos = np.diff(cwy[:, self.ends], axis=1, prepend=0.0)
        return pos, everyone - pos

    def auc_batch(self, prefix: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """ROC-AUC per replicate (ties count one half)."""
        pos, neg = self._groups(prefix)
        total_pos, total_neg = pos.sum(axis=1), neg.sum(axis=1)
        # Negatives ranked below each group.
        below = total_neg[:, None] - np.cumsum(neg, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            value = np.sum(pos * (below + 0.5 * neg), axis=1) / (total_pos * total_neg)
        return np.where((total_pos > 0) & (total_neg > 0), value, np.nan)

    def average_precision_batch(self, prefix: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """Area under the precision-recall curve per replicate (scikit-learn's definition)."""
        cw, cwy = prefix
        pos, _ = self._groups(prefix)
        tp, seen = cwy[:, self.ends], cw[:, self.ends]
        total = tp[:, -1] if tp.shape[1] else np.zeros(len(tp))
        precision = tp / np.maximum(seen, 1e-300)
        with np.errstate(invalid="ignore", divide="ignore"):
            value = np.sum(pos * precision, axis=1) / total
        return np.where(total > 0, value, np.nan)

    def top_batch(
        self, fraction: float, prefix: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Precision and recall among the top ``fraction`` of (weighted) rows, per replicate."""
        cw, cwy = prefix
        picked, hits, total = (np.zeros(len(cw)) for _ in range(3))
        for r in range(len(cw)):
            if not cw.shape[1]:
                continue
            # Rows whose cumulative weight stays within the fraction (a prefix: weights >= 0).
            k = np.searchsorted(cw[r], fraction * cw[r, -1] + 1e-9, side="right")
            picked[r] = cw[r, k - 1] if k else 0.0
            hits[r] = cwy[r, k - 1] if k else 0.0
            total[r] = cwy[r, -1]
        with np.errstate(invalid="ignore", divide="ignore"):
            return (
                np.where(picked > 0, hits / picked, np.nan),
                np.where(total > 0, hits / total, np.nan),
            )

    def auc(self, w: np.ndarray | None = None) -> float:
        """ROC-AUC (ties count one half)."""
        value = self.auc_batch(self.prefix(w))[0]
        if np.isnan(value):
            raise ValueError("AUC needs both classes")
        return float(value)

    def average_precision(self, w: np.ndarray | None = None) -> float:
        """Area under the precision-recall curve, as scikit-learn's average precision."""
        value = self.average_precision_batch(self.prefix(w))[0]
        if np.isnan(value):
            raise ValueError("average precision needs a positive")
        return float(value)

    def top(self, fraction: float, w: np.ndarray | None = None) -> tuple[float, float]:
        """Precision and recall among the top ``fraction`` of (weighted) rows by score."""
        precision, recall = self.top_batch(fraction, self.prefix(w))
        return float(precision[0]), float(recall[0])


def auc(y: np.ndarray, score: np.ndarray, w: np.ndarray | None = None) -> float:
    """ROC-AUC."""
    return Ranked(y, score).auc(w)


def pr_auc(y: np.ndarray, score: np.ndarray, w: np.ndarray | None = None) -> float:
    """Area under the precision-recall curve (average precision)."""
    return Ranked(y, score).average_precision(w)


def brier(y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None) -> float:
    """Mean squared error of the probability."""
    return float(np.average((np.asarray(p) - y) ** 2, weights=w))


def brier_batch(y: np.ndarray, p: np.ndarray, W: np.ndarray) -> np.ndarray:
    """:func:`brier` per replicate (one row of ``W`` each)."""
    return W @ (np.asarray(p, dtype=float) - y) ** 2 / W.sum(axis=1)


def _bin_sums(y: np.ndarray, p: np.ndarray, W: np.ndarray, bins: int) -> tuple[np.ndarray, ...]:
    """Weight, weighted probability and weighted outcome per equal-width bin and replicate."""
    p = np.asarray(p, dtype=float)
    position = np.clip((p * bins).astype(int), 0, bins - 1)
    onehot = np.zeros((len(p), bins))
    onehot[np.arange(len(p)), position] = 1.0
    return W @ onehot, W @ (onehot * p[:, None]), W @ (onehot * np.asarray(y, float)[:, None])


def calibration_table(
    y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None, *, bins: int = 10
) -> dict[str, list[float]]:
    """Equal-width bins of ``p``: mean probability, observed rate and weight in each."""
    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=float)
    weight, mean_p, observed = (sums[0] for sums in _bin_sums(y, p, w[None, :], bins))
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "mean_probability": (mean_p / weight).tolist(),
            "observed_rate": (observed / weight).tolist(),
            "weight": weight.tolist(),
        }


def ece_batch(y: np.ndarray, p: np.ndarray, W: np.ndarray, *, bins: int = 10) -> np.ndarray:
    """:func:`ece` per replicate (one row of ``W`` each)."""
    weight, mean_p, observed = _bin_sums(y, p, W, bins)
    # Weight times |rate - probability| is |observed - weighted probability|: no division.
    return np.abs(observed - mean_p).sum(axis=1) / weight.sum(axis=1)


def ece(y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None, *, bins: int = 10) -> float:
    """Expected calibration error over equal-width bins (weighted mean |rate - probability|)."""
    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=float)
    return float(ece_batch(y, p, w[None, :], bins=bins)[0])


def lift_by_decile(y: np.ndarray, score: np.ndarray) -> list[float]:
    """Observed rate in each score decile (highest first) over the overall rate."""
    order = np.argsort(-np.asarray(score), kind="stable")
    deciles = np.array_split(order, 10)
    base = y.mean()
    return [float(y[d].mean() / base) if base else np.nan for d in deciles]


class PersonBootstrap:
    """Person-level bootstrap weights, drawn once and shared by every metric (paired).

    Parameters
    ----------
    persons : array of person ids, one per row
    n : int
        Number of replicates.
    seed : int
    """

    # Replicates per weight matrix: bounds memory (chunk x rows floats) at any size.
    chunk = 50

    def __init__(self, persons: np.ndarray, n: int = 200, seed: int = 0) -> None:
        self.persons = persons
        self.n = n
        self.seed = seed

    def weights(self) -> list[np.ndarray]:
        """One weight vector per replicate (memoised)."""
        if not hasattr(self, "weights_"):
            codes, _ = pd.factorize(pd.Series(np.asarray(self.persons)), sort=True)
            n_persons = int(codes.max()) + 1 if len(codes) else 0
            rng = np.random.default_rng(self.seed)
            self.weights_ = [
                np.bincount(rng.integers(0, n_persons, n_persons), minlength=n_persons)[
                    codes
                ].astype(float)
                for _ in range(self.n)
            ]
        return self.weights_

    def matrices(self) -> Iterator[np.ndarray]:
        """The replicates' weights as matrices of up to :attr:`chunk` rows, in order."""
        weights = self.weights()
        for start in range(0, len(weights), self.chunk):
            yield np.vstack(weights[start : start + self.chunk])

    def interval(self, metric: Callable, level: float = 0.95) -> list[float]:
        """The ``level`` percentile interval of ``metric(w)`` over the replicates' weights."""
        values = []
        for w in self.weights():
            try:
                values.append(metric(w))
            except ValueError:  # a replicate with one class: AUC undefined
                continue
        return percentile_interval(np.array(values, dtype=float), level)

    def batch_intervals(
        self, metrics: Callable[[np.ndarray], dict[str, np.ndarray]], level: float = 0.95
    ) -> dict[str, list[float]]:
        """Intervals of several metrics computed together on each weight matrix.

        ``metrics(W)`` returns, for a replicates x rows matrix ``W``, one array of values per
        metric name (NaN where a replicate leaves a metric undefined).
        """
        parts: dict[str, list[np.ndarray]] = {}
        for W in self.matrices():
            for name, values in metrics(W).items():
                parts.setdefault(name, []).append(values)
        return {
            name: percentile_interval(np.concatenate(values), level)
            for name, values in parts.items()
        }


def percentile_interval(values: np.ndarray, level: float = 0.95) -> list[float]:
    """The ``level`` percentile interval of the finite ``values`` (NaN, NaN if none)."""
    values = values[np.isfinite(values)]
    if not len(values):
        return [np.nan, np.nan]
    tail = (1 - level) / 2 * 100
    return [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]


def metric_block(
    y: np.ndarray,
    score: np.ndarray,
    bootstrap: PersonBootstrap,
    *,
    probability: bool,
    bins: int = 10,
) -> dict:
    """Every metric of one score (with intervals); calibration metrics only for probabilities."""
    ranked = Ranked(y, score)

    def metrics(W: np.ndarray) -> dict[str, np.ndarray]:
        prefix = ranked.prefix(W)
        out = {"auc": ranked.auc_batch(prefix), "pr_auc": ranked.average_precision_batch(prefix)}
        if probability:
            out["brier"] = brier_batch(y, score, W)
            out["ece"] = ece_batch(y, score, W, bins=bins)
        for fraction in TOP_FRACTIONS:
            label = f"top{round(fraction * 100)}"
            out[f"precision_{label}"], out[f"recall_{label}"] = ranked.top_batch(fraction, prefix)
        return out

    point = metrics(np.ones((1, len(y))))
    intervals = bootstrap.batch_intervals(metrics)
    out: dict = {}
    for name, values in point.items():
        out[name] = float(values[0])
        out[f"{name}_ci"] = intervals[name]
    out["lift_by_decile"] = lift_by_decile(y, score)
    if probability:
        out["calibration_curve"] = calibration_table(y, score, bins=bins)
    return out


def auc_ratio_interval(
    y: np.ndarray, score: np.ndarray, ceiling: np.ndarray, bootstrap: PersonBootstrap
) -> list[float]:
    """Paired person-bootstrap interval of AUC(score) / AUC(ceiling)."""
    model, best = Ranked(y, score), Ranked(y, ceiling)
    ratio = bootstrap.batch_intervals(
        lambda W: {"ratio": model.auc_batch(model.prefix(W)) / best.auc_batch(best.prefix(W))}
    )
    return ratio["ratio"]
