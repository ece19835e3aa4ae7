"""Evaluation: discrimination, calibration, lift and top-k, with person-bootstrap intervals.

People recur across index offences, so intervals come from a bootstrap that resamples persons
(all of a person's index offences together). A replicate is a vector of per-row weights (how
many times each row's person was drawn), which every metric here accepts, so a replicate costs
one weighted metric evaluation and no copying.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

TOP_FRACTIONS: tuple[float, ...] = (0.05, 0.10, 0.20)


class Ranked:
    """A score sorted once, so each bootstrap replicate costs a few weighted sums.

    Rows are ordered by score (descending) and grouped into runs of tied scores; weighted AUC,
    average precision and top-k figures then need only cumulative sums of the weights.
    """

    def __init__(self, y: np.ndarray, score: np.ndarray) -> None:
        self.y = np.asarray(y, dtype=float)
        self.order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
        ordered = np.asarray(score, dtype=float)[self.order]
        self.group = np.concatenate([[0], np.cumsum(ordered[1:] != ordered[:-1])])
        self.n_groups = int(self.group[-1]) + 1 if len(ordered) else 0

    def _sums(self, w: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        w = np.ones(len(self.y)) if w is None else np.asarray(w, dtype=float)
        wy = (w * self.y)[self.order]
        wn = (w * (1 - self.y))[self.order]
        pos = np.bincount(self.group, weights=wy, minlength=self.n_groups)
        neg = np.bincount(self.group, weights=wn, minlength=self.n_groups)
        return pos, neg

    def auc(self, w: np.ndarray | None = None) -> float:
        """ROC-AUC (ties count one half)."""
        pos, neg = self._sums(w)
        total_pos, total_neg = pos.sum(), neg.sum()
        if total_pos == 0 or total_neg == 0:
            raise ValueError("AUC needs both classes")
        # Negatives ranked below each group (groups run from the highest score down).
        below = total_neg - np.cumsum(neg)
        return float(np.sum(pos * (below + 0.5 * neg)) / (total_pos * total_neg))

    def average_precision(self, w: np.ndarray | None = None) -> float:
        """Area under the precision-recall curve, as scikit-learn's average precision."""
        pos, neg = self._sums(w)
        tp, fp = np.cumsum(pos), np.cumsum(neg)
        if tp[-1] == 0:
            raise ValueError("average precision needs a positive")
        precision = tp / np.maximum(tp + fp, 1e-300)
        return float(np.sum(pos / tp[-1] * precision))

    def top(self, fraction: float, w: np.ndarray | None = None) -> tuple[float, float]:
        """Precision and recall among the top ``fraction`` of (weighted) rows by score."""
        w = np.ones(len(self.y)) if w is None else np.asarray(w, dtype=float)
        ordered_w = w[self.order]
        cum = np.cumsum(ordered_w)
        chosen = cum <= fraction * cum[-1] + 1e-9
        hits = np.sum(ordered_w[chosen] * self.y[self.order][chosen])
        picked = np.sum(ordered_w[chosen])
        total = np.sum(w * self.y)
        return (hits / picked if picked else np.nan, hits / total if total else np.nan)


def auc(y: np.ndarray, score: np.ndarray, w: np.ndarray | None = None) -> float:
    """ROC-AUC."""
    return Ranked(y, score).auc(w)


def pr_auc(y: np.ndarray, score: np.ndarray, w: np.ndarray | None = None) -> float:
    """Area under the precision-recall curve (average precision)."""
    return Ranked(y, score).average_precision(w)


def brier(y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None) -> float:
    """Mean squared error of the probability."""
    return float(np.average((np.asarray(p) - y) ** 2, weights=w))


def calibration_table(
    y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None, *, bins: int = 10
) -> dict[str, list[float]]:
    """Equal-width bins of ``p``: mean probability, observed rate and weight in each."""
    w = np.ones(len(y)) if w is None else w
    position = np.clip((np.asarray(p) * bins).astype(int), 0, bins - 1)
    weight = np.bincount(position, weights=w, minlength=bins)
    mean_p = np.bincount(position, weights=w * p, minlength=bins)
    observed = np.bincount(position, weights=w * y, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "mean_probability": (mean_p / weight).tolist(),
            "observed_rate": (observed / weight).tolist(),
            "weight": weight.tolist(),
        }


def ece(y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None, *, bins: int = 10) -> float:
    """Expected calibration error over equal-width bins (weighted mean |rate - probability|)."""
    table = calibration_table(y, p, w, bins=bins)
    weight = np.array(table["weight"])
    gap = np.abs(np.array(table["observed_rate"]) - np.array(table["mean_probability"]))
    present = weight > 0
    return float(np.sum(weight[present] * gap[present]) / weight.sum())


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

    def __init__(self, persons: np.ndarray, n: int = 200, seed: int = 0) -> None:
        self.persons = persons
        self.n = n
        self.seed = seed

    def weights(self) -> list[np.ndarray]:
        """One weight vector per replicate (memoised)."""
        if not hasattr(self, "weights_"):
            _, codes = np.unique(np.asarray(self.persons), return_inverse=True)
            n_persons = int(codes.max()) + 1 if len(codes) else 0
            rng = np.random.default_rng(self.seed)
            self.weights_ = [
                np.bincount(rng.integers(0, n_persons, n_persons), minlength=n_persons)[
                    codes
                ].astype(float)
                for _ in range(self.n)
            ]
        return self.weights_

    def interval(self, metric: Callable, level: float = 0.95) -> list[float]:
        """The ``level`` percentile interval of ``metric(w)`` over the replicates' weights."""
        values = []
        for w in self.weights():
            try:
                values.append(metric(w))
            except ValueError:  # a replicate with one class: AUC undefined
                continue
        values = np.array([v for v in values if np.isfinite(v)])
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
    metrics: dict[str, Callable] = {"auc": ranked.auc, "pr_auc": ranked.average_precision}
    if probability:
        metrics["brier"] = lambda w=None: brier(y, score, w)
        metrics["ece"] = lambda w=None: ece(y, score, w, bins=bins)
    for fraction in TOP_FRACTIONS:
        label = f"top{round(fraction * 100)}"
        metrics[f"precision_{label}"] = lambda w=None, f=fraction: ranked.top(f, w)[0]
        metrics[f"recall_{label}"] = lambda w=None, f=fraction: ranked.top(f, w)[1]
    out: dict = {}
    for name, fn in metrics.items():
        out[name] = float(fn())
        out[f"{name}_ci"] = bootstrap.interval(fn)
    out["lift_by_decile"] = lift_by_decile(y, score)
    if probability:
        out["calibration_curve"] = calibration_table(y, score, bins=bins)
    return out


def auc_ratio_interval(
    y: np.ndarray, score: np.ndarray, ceiling: np.ndarray, bootstrap: PersonBootstrap
) -> list[float]:
    """Paired person-bootstrap interval of AUC(score) / AUC(ceiling)."""
    model, best = Ranked(y, score), Ranked(y, ceiling)
    return bootstrap.interval(lambda w: model.auc(w) / best.auc(w))
