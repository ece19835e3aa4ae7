"""Vectorised person-level bootstrap: one seeded resample of persons shared by every group.

A resample draws persons with replacement (a person's rows travel together, so repeated
index events of one offender do not pass for independent evidence); without person ids each
row is its own unit. The draw is stored once as a (resamples x persons) count matrix and every
group, metric and disparity is computed from that same matrix, so a ratio between two groups
is a paired comparison and an interval for a difference is a real interval of the difference.

Resampled totals of any per-row statistic for any set of cells are one sparse matrix product,
``counts @ Z``, where ``Z`` holds each person's statistic in the column of their cell. fairlearn's
``MetricFrame(n_boot=...)`` instead re-runs the whole grouping once per resample on resampled
rows, which is what makes it too slow at audit scale.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import pandas as pd
from scipy import sparse

NOT_FITTED = "PersonBootstrap is not fitted: call fit(persons) first"
_CHUNK = 50


class PersonBootstrap:
    """Seeded resampling of persons, shared across groups, metrics and decisions.

    Parameters
    ----------
    n_resamples : int
        Number of bootstrap resamples.
    seed : int
        Seed of the random generator; the same seed and persons give the same resamples.
    confidence : float
        Coverage of the percentile intervals.

    Attributes
    ----------
    row_person_ : ndarray of int
        Person code of each row.
    n_persons_ : int
        Number of distinct persons.
    counts_ : ndarray of shape (n_resamples, n_persons_)
        How many times each person is drawn in each resample.

    Examples
    --------
    >>> boot = PersonBootstrap(n_resamples=3, seed=1).fit(["a", "a", "b"])
    >>> boot.counts_.sum(axis=1).tolist()
    [2, 2, 2]
    """

    def __init__(self, n_resamples: int = 200, *, seed: int = 0, confidence: float = 0.95):
        self.n_resamples = n_resamples
        self.seed = seed
        self.confidence = confidence

    def fit(self, persons) -> PersonBootstrap:
        """Draw the resamples for the persons of each row (one draw for everything after)."""
        if self.n_resamples < 1:
            raise ValueError("n_resamples must be at least 1")
        codes, uniques = pd.factorize(pd.Series(persons), use_na_sentinel=False)
        self.row_person_ = codes.astype(np.int64)
        self.n_persons_ = len(uniques)
        rng = np.random.default_rng(self.seed)
        counts = np.empty((self.n_resamples, self.n_persons_), dtype=np.uint16)
        for b in range(self.n_resamples):
            draw = rng.integers(0, self.n_persons_, size=self.n_persons_)
            counts[b] = np.bincount(draw, minlength=self.n_persons_)
        self.counts_ = counts
        return self

    def _check(self, n_rows: int) -> None:
        if not hasattr(self, "counts_"):
            raise RuntimeError(NOT_FITTED)
        if n_rows != self.row_person_.size:
            raise ValueError(f"expected {self.row_person_.size} rows, got {n_rows}")

    def _chunks(self) -> Iterator[slice]:
        for start in range(0, self.n_resamples, _CHUNK):
            yield slice(start, min(start + _CHUNK, self.n_resamples))

    def totals(self, stats: np.ndarray, cells: np.ndarray, n_cells: int) -> np.ndarray:
        """Resampled sums of per-row statistics within cells.

        Parameters
        ----------
        stats : ndarray of shape (n_rows, k)
            Statistics per row (counts such as ``tp``, or a score to sum).
        cells : ndarray of shape (n_rows, m)
            Cell code of each row in each of ``m`` partitions (codes in ``[0, n_cells)``,
            negative for a row in no cell); a row counts once in every partition.
        n_cells : int
            Number of distinct cell codes over all partitions.

        Returns
        -------
        ndarray of shape (n_resamples, n_cells, k)
        """
        stats = np.asarray(stats, dtype=float)
        cells = np.asarray(cells).reshape(len(stats), -1)
        self._check(len(stats))
        k = stats.shape[1]
        rows, cols, data = [], [], []
        for part in range(cells.shape[1]):
            inside = cells[:, part] >= 0
            for j in range(k):
                rows.append(self.row_person_[inside])
                cols.append(cells[inside, part] * k + j)
                data.append(stats[inside, j])
        z = sparse.csr_matrix(
            (np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))),
            shape=(self.n_persons_, n_cells * k),
        )
        out = np.empty((self.n_resamples, n_cells * k))
        for chunk in self._chunks():
            out[chunk] = self.counts_[chunk].astype(float) @ z
        return out.reshape(self.n_resamples, n_cells, k)

    def auc(self, y_true, score, cells: np.ndarray, n_cells: int) -> np.ndarray:
        """Resampled ROC AUC of ``score`` within each cell (NaN where a class is absent).

        Ties count one half, as in ``sklearn.metrics.roc_auc_score``.

        Returns
        -------
        ndarray of shape (n_resamples, n_cells)
        """
        y = np.asarray(y_true) == 1
        s = np.asarray(score, dtype=float)
        cells = np.asarray(cells).reshape(len(y), -1)
        self._check(len(y))
        out = np.full((self.n_resamples, n_cells), np.nan)
        for part in range(cells.shape[1]):
            codes = cells[:, part]
            order = np.lexsort((s, codes))  # by cell, then by score
            order = order[codes[order] >= 0]
            bounds = np.flatnonzero(np.diff(codes[order])) + 1
            for idx in np.split(order, bounds):
                if idx.size:
                    out[:, codes[idx[0]]] = self._cell_auc(y[idx], s[idx], idx)
        return out

    def _cell_auc(self, y: np.ndarray, s: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """AUC of one cell in every resample; ``s`` ascending.

        Each positive counts the (resampled) negatives scored below it, plus half of those
        tied with it: two searchsorted positions into the negatives' cumulative weights.
        """
        neg_scores = s[~y]
        lo = np.searchsorted(neg_scores, s[y], side="left")
        hi = np.searchsorted(neg_scores, s[y], side="right")
        pos_persons, neg_persons = self.row_person_[rows[y]], self.row_person_[rows[~y]]
        auc = np.full(self.n_resamples, np.nan)
        for chunk in self._chunks():
            counts = self.counts_[chunk]
            below = np.zeros((counts.shape[0], neg_persons.size + 1), dtype=np.int64)
            np.cumsum(counts[:, neg_persons], axis=1, out=below[:, 1:])
            weights = counts[:, pos_persons].astype(np.int64)
            twice = (weights * (below[:, lo] + below[:, hi])).sum(axis=1)
            den = weights.sum(axis=1) * below[:, -1]
            with np.errstate(invalid="ignore", divide="ignore"):
                auc[chunk] = np.where(den > 0, twice / (2.0 * np.where(den > 0, den, 1)), np.nan)
        return auc

    def interval(self, values: np.ndarray) -> np.ndarray:
        """Percentile interval over resamples (axis 0): array of shape (2, ...)."""
        alpha = (1 - self.confidence) / 2
        values = np.where(np.isfinite(values), values, np.nan)
        with warnings.catch_warnings():  # an all-NaN cell (e.g. no positives) gives NaN bounds
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanquantile(values, [alpha, 1 - alpha], axis=0)
